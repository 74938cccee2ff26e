"""STEM's spatiotemporal entropy model: the official code's wiring and constants (tinyvision/IPCodec),
exact coding in every spatial-prior mode, and training that lowers the P-frame rate."""

import numpy as np
import pytest
import torch
from torch import nn

from codeclab.coding import get_coder
from codeclab.entropy_models import integer
from codeclab.entropy_models.gaussian import GaussianConditional, GridGaussianConditional
from codeclab.entropy_models.spatiotemporal import LEAKY_SLOPE, CausalContext, SpatiotemporalEntropyModel

N, M = 8, 12


def _convs(module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _shape(conv):
    weight = conv.weight
    out, inp = (weight.shape[1], weight.shape[0]) if isinstance(conv, nn.ConvTranspose2d) else weight.shape[:2]
    return (inp, out, weight.shape[-1], conv.stride[0])


def test_paper_widths_kernels_and_activations():
    C = 192  # the temporal prior at a realistic width: C -> 4C/3 -> 5C/3 -> 2C, 5x5 (hyperT.py)
    model = SpatiotemporalEntropyModel(128, C)
    assert [_shape(c) for c in _convs(model.temporal_prior)] == [(192, 256, 5, 1), (256, 320, 5, 1), (320, 384, 5, 1)]
    # hyperE.py: conv3, conv5/2, conv5/2 over [y_t, y_hat_{t-1}]; hyperD.py (deconv): N, 1.5N, then 2C.
    assert [_shape(c) for c in _convs(model.h_a)] == [(384, 128, 3, 1), (128, 128, 5, 2), (128, 128, 5, 2)]
    assert [_shape(c) for c in _convs(model.h_s)] == [(128, 128, 5, 2), (128, 192, 5, 2), (192, 384, 3, 1)]
    # entropy_para.py: in -> 5 in/6 -> 2 in/3 -> 2C with in = 6C (spatial, temporal, hyper).
    assert [_shape(c) for c in _convs(model.entropy_parameters)] == [(1152, 960, 1, 1), (960, 768, 1, 1), (768, 384, 1, 1)]
    assert [_shape(c) for c in _convs(model.context)] == [(192, 384, 5, 1)]
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {LEAKY_SLOPE} == {0.2}  # TensorFlow's tf.nn.leaky_relu default
    assert not [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
    without = SpatiotemporalEntropyModel(128, C, spatial="none")
    assert _shape(_convs(without.entropy_parameters)[0]) == (768, 640, 1, 1)


def test_causal_window_is_the_official_mask():
    # context.py: pad 4 rows on top and 2 columns each side; kernel row 4 is zero from column 2 on.
    context = CausalContext(1, 1)
    assert context.padding == [2, 2, 4, 0]
    expected = torch.ones(5, 5)
    expected[4, 2:] = 0
    assert torch.equal(context.mask[0, 0], expected)
    assert torch.equal(context.conv.weight[0, 0] != 0, expected.bool())
    # What position (i, j) sees: rows i-4..i-1 (columns j-2..j+2) and (i, j-2), (i, j-1).
    with torch.no_grad():
        context.conv.weight.fill_(1.0).mul_(context.mask)
        context.conv.bias.zero_()
    i, j = 6, 5
    for di in range(-6, 3):
        for dj in range(-4, 5):
            r = torch.zeros(1, 1, 10, 10)
            if 0 <= i + di < 10 and 0 <= j + dj < 10:
                r[0, 0, i + di, j + dj] = 1
                seen = context(r)[0, 0, i, j].item() != 0
                assert seen == (-4 <= di <= -1 and abs(dj) <= 2 or di == 0 and dj in (-2, -1)), (di, dj)


def test_masked_weights_stay_zero_through_training():
    model = SpatiotemporalEntropyModel(N, M)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    y, ref = torch.randn(2, M, 8, 8) * 3, torch.randn(2, M, 8, 8) * 3
    for _ in range(3):
        optimizer.zero_grad()
        loss = -sum(torch.log(l).sum() for l in model(y, ref)["likelihoods"].values())
        loss.backward()
        optimizer.step()
    assert torch.all(model.context.conv.weight[:, :, 4, 2:] == 0)
    assert torch.any(model.context.conv.weight[:, :, :4] != 0)


@pytest.mark.parametrize("spatial", ["masked", "checkerboard", "none"])
@pytest.mark.parametrize("arithmetic", ["integer", "float"])
def test_decoder_reproduces_the_encoder_exactly(spatial, arithmetic):
    torch.manual_seed(0)
    model = SpatiotemporalEntropyModel(N, M, spatial, arithmetic=arithmetic, rate_levels=4, scale_table_levels=256).eval()
    model.gaussian_conditional.update_tables()
    model.entropy_bottleneck.update_tables()
    coder = get_coder()
    reference = torch.randn(1, M, 8, 12) * 4
    y = reference + torch.randn(1, M, 8, 12)
    for level in (0, 3):
        with torch.no_grad():
            streams, y_hat = model.compress(y, reference, coder, level)
            decoded = model.decompress(streams, reference, coder, level)
            assert torch.equal(decoded, y_hat)
            assert torch.equal(model.quantize(y, reference, level), y_hat)
        # The step is the level's gain, as for the image codec's I-frames.
        gain = model.gain_bank.coding_gain(level)
        assert (y_hat - y).abs().max() <= 0.5 / gain + 1e-4


@pytest.mark.parametrize("spatial", ["masked", "checkerboard"])
def test_p_frames_stay_on_the_reference_grid_and_the_mean_moves_only_the_rate(spatial):
    torch.manual_seed(0)
    coder = get_coder()
    reference = torch.randn(1, M, 8, 12) * 4
    y = reference + torch.randn(1, M, 8, 12)
    models = {grid: SpatiotemporalEntropyModel(N, M, spatial, rate_levels=4, scale_table_levels=256, residual_grid=grid,
                                               mean_offsets=offsets).eval()
              for grid, offsets in (("reference", 16), ("mean", 0))}
    models["mean"].load_state_dict(models["reference"].state_dict(), strict=False)  # no offset tables
    for model in models.values():
        model.gaussian_conditional.update_tables()
        model.entropy_bottleneck.update_tables()
    with torch.no_grad():
        for level in (0, 3):
            gain = models["reference"].gain_bank.coding_gain(level)
            streams, y_hat = models["reference"].compress(y, reference, coder, level)
            assert torch.equal(models["reference"].decompress(streams, reference, coder, level), y_hat)
            # r_hat = round(g r) / g: the grid of the reference, whatever the predicted means
            # (up to the float rounding of y_hat = r_hat + reference).
            assert torch.allclose(y_hat - reference, torch.round(gain * (y - reference)) / gain, rtol=0, atol=1e-5)
            # Rounded around the means instead, the reconstruction depends on them.
            assert not torch.equal(models["mean"].quantize(y, reference, level), y_hat)
    with pytest.raises(ValueError, match="residual_grid must be one of reference, mean"):
        SpatiotemporalEntropyModel(N, M, residual_grid="integer")
    with pytest.raises(ValueError, match="mean_offsets needs residual_grid='reference'"):
        SpatiotemporalEntropyModel(N, M, residual_grid="mean")


def _offset_models(spatial="checkerboard"):
    """The same weights with the mean rounded to the grid (0) and resolved to 1/16 (16)."""
    torch.manual_seed(0)
    models = {K: SpatiotemporalEntropyModel(N, M, spatial, rate_levels=4, scale_table_levels=256, arithmetic="integer",
                                            mean_offsets=K).eval() for K in (0, 16)}
    with torch.no_grad():  # small scales and means off the grid: where the offset tables matter
        last = models[0].entropy_parameters[-1]
        last.bias[:M].fill_(0.5)
        last.bias[M:].uniform_(-0.5, 0.5)
    models[16].load_state_dict(models[0].state_dict(), strict=False)
    for model in models.values():
        model.gaussian_conditional.update_tables()
        model.entropy_bottleneck.update_tables()
    return models


@pytest.mark.parametrize("spatial", ["masked", "checkerboard"])
def test_mean_offsets_code_exactly_on_the_reference_grid_and_lower_the_rate(spatial):
    models = _offset_models(spatial)
    coder = get_coder()
    reference = torch.randn(1, M, 8, 12) * 4
    y = reference + 0.5 * torch.randn(1, M, 8, 12)
    with torch.no_grad():
        coded = {}
        for level in (0, 3):
            for K, model in models.items():
                streams, y_hat = model.compress(y, reference, coder, level)
                assert torch.equal(model.decompress(streams, reference, coder, level), y_hat)
                assert torch.equal(model.quantize(y, reference, level), y_hat)
                estimate = -torch.log2(model(y, reference, level)["likelihoods"]["y"]).sum().item()
                # What training estimates is what the tables code (within the coder's overhead).
                assert abs(8 * len(streams[0]) - estimate) < 0.01 * estimate + 128
                coded[level, K] = (streams[0], y_hat)
            # The same reconstruction: the grid does not depend on the mean.
            assert torch.equal(coded[level, 0][1], coded[level, 16][1])
    # Level 0 (scales about 0.5 to 2): the offsets save; level 3 (gain about 5): every scale is
    # above the offset tables' limit, so both code the same bytes.
    assert len(coded[0, 16][0]) < 0.96 * len(coded[0, 0][0])
    assert coded[3, 16][0] == coded[3, 0][0]


def test_integer_arithmetic_makes_every_decoder_network_integer():
    model = SpatiotemporalEntropyModel(N, M, "masked", arithmetic="integer")
    assert model.portable
    for network in (model.h_s, model.temporal_prior, model.context, model.entropy_parameters):
        convs = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert convs and all(isinstance(c, integer.IntegerConvMixin) for c in convs)
        assert all(m.numerator == 819 for m in network.modules() if isinstance(m, integer.IntegerLeakyReLU))
    assert not any(isinstance(m, integer.IntegerConvMixin) for m in model.h_a.modules())  # encoder only


def test_training_lowers_the_p_frame_rate_of_a_predictable_frame():
    torch.manual_seed(1)
    model = SpatiotemporalEntropyModel(N, M, "checkerboard")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    reference = torch.randn(8, M, 8, 8) * 5

    def rate():
        y = reference + 0.3 * torch.randn_like(reference)
        likelihoods = model(y, torch.round(reference))["likelihoods"]
        return -sum(torch.log2(l).sum() for l in likelihoods.values()) / reference.numel()

    first = rate().item()
    for _ in range(60):
        optimizer.zero_grad()
        loss = rate()
        loss.backward()
        optimizer.step()
    assert rate().item() < 0.5 * first


def test_fit_quantiles_settles_the_aux_loss_without_touching_the_density():
    from codeclab.entropy_models.factorized import EntropyBottleneck

    bottleneck = EntropyBottleneck(4)
    density = {k: v.clone() for k, v in bottleneck.state_dict().items() if "quantiles" not in k}
    before = float(bottleneck.loss().detach())
    assert bottleneck.fit_quantiles() < 0.1 * before
    assert all(torch.equal(v, bottleneck.state_dict()[k]) for k, v in density.items())


def test_grid_gaussian_offset_tables_index_and_likelihood():
    """STEM's default: 16 steps of the mean below table scale 2 (17 tables per scale, offsets
    -1/2 .. 1/2); each table is N(b/16, s); training's likelihood uses the mean coding uses."""
    model = SpatiotemporalEntropyModel(N, M, rate_levels=4, scale_table_levels=256)
    gaussian = model.gaussian_conditional
    assert isinstance(gaussian, GridGaussianConditional)
    assert (gaussian.mean_offsets, gaussian.offset_scale_limit) == (16, 2.0)
    gaussian.update_tables()
    table = gaussian.scale_table
    small = int((table < 2.0).sum())
    assert small == 96 and gaussian._offset_cdf_length.numel() == 17 * small
    tables = gaussian.tables()
    assert tables.num_tables == 256 + 17 * small
    tables.check()
    # Index: scale index s; below the limit 256 + 17 s + b + 8 with b = round(16 (mu - round(mu))).
    scales = torch.tensor([0.05, 0.3, float(table[small - 1]), float(table[small]), 40.0])
    means = torch.tensor([2.49, -0.26, 7.5, 0.3, 0.2])
    s = GaussianConditional.table_indexes(gaussian, scales)
    b = torch.tensor([8, -4, -8, 5, 3])  # 2.49 - 2 = 0.49 -> 8; 7.5 rounds to 8 (half to even): -0.5 -> -8
    expected = torch.where(s < small, 256 + 17 * s + b + 8, s)
    assert torch.equal(gaussian.table_indexes(scales, means), expected.int())
    # Table (s, b) holds the probabilities of N(b/16, table[s]) on the integers around round(mu).
    for index, scale, shift in ((256 + 17 * 10 + 3, table[10], -5 / 16), (256 + 17 * 90 + 16, table[90], 0.5)):
        length, offset = tables.lengths[index] - 1, tables.offsets[index]
        cdf = tables.cdfs[index, :length].astype(float) / 2**16
        symbols = torch.arange(offset, offset + length - 1, dtype=torch.float64)
        normal = torch.distributions.Normal(float(shift), float(scale))
        exact = (normal.cdf(symbols + 0.5) - normal.cdf(symbols - 0.5)).numpy()
        assert abs(np.diff(cdf) - exact).max() < 2e-3
    # Training's likelihood: the same rounded mean (straight-through to the network's mean).
    values = torch.round(means) + torch.tensor([0.0, 1.0, -1.0, 0.0, 2.0])
    binned = torch.round(means) + torch.where(scales <= table[small - 1], b / 16, 0.0)
    plain = GaussianConditional.likelihood(gaussian, values, scales, binned)
    torch.testing.assert_close(gaussian.likelihood(values, scales, means), plain)
    with pytest.raises(ValueError, match="mean_offsets must be 0 or a power of two"):
        GridGaussianConditional(12)
