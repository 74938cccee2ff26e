"""The project's factorized density and Gaussian conditional equal compressai 1.2.8's:
state_dict keys, likelihoods, quantisation, auxiliary loss and the integer CDF tables."""

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck as CaiBottleneck
from compressai.entropy_models import GaussianConditional as CaiGaussian
from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf as cai_pmf_to_cdf
from compressai.models.google import get_scale_table

from codeclab.coding.native import pmf_to_quantized_cdf
from codeclab.entropy_models.factorized import EntropyBottleneck
from codeclab.entropy_models.gaussian import SCALES_LEVELS, SCALES_MAX, SCALES_MIN, GaussianConditional, default_scale_table


def _trained_bottleneck(channels=6):
    """A compressai bottleneck with perturbed parameters (wider, shifted densities) and a copy."""
    torch.manual_seed(0)
    theirs = CaiBottleneck(channels)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.3 * torch.randn_like(p))
        theirs.quantiles.mul_(torch.linspace(0.5, 4, channels)[:, None, None])
    ours = EntropyBottleneck(channels)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def test_bottleneck_state_dict_keys_and_init_equal_compressai():
    torch.manual_seed(1)
    theirs = CaiBottleneck(4)
    torch.manual_seed(1)
    ours = EntropyBottleneck(4)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


@pytest.mark.parametrize("training", [True, False])
def test_bottleneck_forward_equals_compressai(training):
    ours, theirs = _trained_bottleneck()
    x = 5 * torch.randn(2, 6, 5, 7)
    torch.manual_seed(3)
    out_a, lik_a = ours(x, training=training)
    torch.manual_seed(3)
    out_b, lik_b = theirs(x, training=training)
    assert torch.equal(out_a, out_b) and torch.equal(lik_a, lik_b)
    assert torch.equal(ours.loss(), theirs.loss())


def test_bottleneck_tables_equal_compressai():
    ours, theirs = _trained_bottleneck()
    theirs.update(force=True)
    ours.update_tables()
    for name in ("_quantized_cdf", "_offset", "_cdf_length"):
        assert torch.equal(getattr(ours, name), getattr(theirs, name)), name


def test_gaussian_scale_table_equals_compressai():
    assert (SCALES_MIN, SCALES_MAX, SCALES_LEVELS) == (0.11, 256, 64)
    assert torch.equal(default_scale_table(), get_scale_table())


def test_gaussian_tables_and_indexes_equal_compressai():
    theirs, ours = CaiGaussian(None), GaussianConditional()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    theirs.update_scale_table(get_scale_table(), force=True)
    ours.update_tables()
    for name in ("_quantized_cdf", "_offset", "_cdf_length", "scale_table"):
        assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
    scales = torch.exp(torch.linspace(-4, 7, 5000))
    assert torch.equal(ours.table_indexes(scales), theirs.build_indexes(scales))


@pytest.mark.parametrize("levels", [64, 256])
def test_table_indexes_equal_compressais_count_at_and_beside_every_table_scale(levels):
    """The binary search finds the index compressai's loop counts (``build_indexes``), also for
    scales equal to a table scale or one float away from it, and the widest table for NaN."""
    ours = GaussianConditional(scale_levels=levels)
    ours.update_tables()
    theirs = CaiGaussian(ours.scale_table.tolist())
    table = ours.scale_table
    scales = torch.cat([table, table.nextafter(torch.full_like(table, 1e9)), table.nextafter(torch.zeros_like(table)),
                        torch.exp(torch.linspace(-4, 7, 5000)), torch.tensor([0.0, -1.0, float("inf")])]).view(1, -1, 1)
    assert torch.equal(ours.table_indexes(scales), theirs.build_indexes(scales))
    assert ours.table_indexes(torch.tensor([float("nan")])).item() == levels - 1


@pytest.mark.parametrize("training", [True, False])
def test_gaussian_forward_equals_compressai(training):
    theirs, ours = CaiGaussian(None), GaussianConditional()
    y, scales, means = 4 * torch.randn(2, 5, 6, 6), torch.rand(2, 5, 6, 6) * 3, torch.randn(2, 5, 6, 6)
    for m in (means, None):
        torch.manual_seed(4)
        a = ours(y, scales, m, training=training)
        torch.manual_seed(4)
        b = theirs(y, scales, m, training=training)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_state_dict_load_resizes_tables():
    ours, theirs = _trained_bottleneck()
    theirs.update(force=True)
    fresh = EntropyBottleneck(6)
    assert fresh._quantized_cdf.numel() == 0
    fresh.load_state_dict(theirs.state_dict())
    assert torch.equal(fresh._quantized_cdf, theirs._quantized_cdf)


def test_pmf_to_quantized_cdf_equals_compressai_including_the_steal_fix_up():
    generator = torch.Generator().manual_seed(0)
    compared = 0
    for n in (2, 3, 17, 300, 4000):
        for k in range(12):
            pmf = torch.rand(n, generator=generator) ** 8
            pmf /= pmf.sum()
            if k % 3 == 0:
                pmf[::2] = 1e-12  # many symbols rounding to zero: the fix-up steals for them
            try:
                expected = cai_pmf_to_cdf(pmf).numpy()
            except ValueError:
                with pytest.raises(ValueError):
                    pmf_to_quantized_cdf(pmf.numpy())
                continue
            assert np.array_equal(pmf_to_quantized_cdf(pmf.numpy()), expected)
            compared += 1
    assert compared > 40


@pytest.mark.parametrize("pmf", [[0.5, -0.1, 0.6], [0.0, 0.0], [float("nan"), 1.0]])
def test_pmf_to_quantized_cdf_rejects_bad_pmfs(pmf):
    with pytest.raises(ValueError):
        pmf_to_quantized_cdf(np.array(pmf, dtype=np.float32))
