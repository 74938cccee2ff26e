"""Paper details that a shape check cannot see (issue 29): each test fails when one detail of the
official code changes (``tools/mutation_check.py`` applies those changes and runs these tests;
reports/faithfulness/README.md). Behaviour over shape: what a network receives, traced through a
forward pass with hooks; constants against the official formula written out here; a disconnected
input changing the output."""

import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from codeclab.codecs import cheng2020_anchor, mlicpp, mlicv2
from codeclab.entropy_models.acgc import ACGCEntropyModel
from codeclab.entropy_models.bounded import BoundedLatentImage
from codeclab.entropy_models.gain import GainBank, GainStep
from codeclab.entropy_models.gaussian import GaussianConditional
from codeclab.entropy_models.mcquic import McQuicEntropyModel, MultiCodebookQuantizer
from codeclab.entropy_models.mixture import GaussianMixtureConditional
from codeclab.entropy_models.mlicpp import LatentResidualPrediction
from codeclab.entropy_models.mlicv2 import MLICv2EntropyModel, SelectionNetwork
from codeclab.entropy_models.spatiotemporal import SpatiotemporalEntropyModel
from tests.entropy_models.test_mlicv2 import _rotate_directly

MLIC_TINY = dict(N=16, M=32, num_slices=4, parameter_hidden=(32, 24, 16), channel_hidden=(16, 16), lrp_hidden=(16, 16))


class Recorder:
    """Forward hooks that keep each call's inputs and output of the modules they watch."""

    def __init__(self):
        self.calls: dict[str, list[tuple]] = {}
        self.handles = []

    def watch(self, name: str, module: nn.Module):
        def hook(_module, args, output):
            self.calls.setdefault(name, []).append((tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args),
                                                    output.detach().clone()))
        self.handles.append(module.register_forward_hook(hook))

    def inputs(self, name: str, call: int = 0) -> tuple:
        return self.calls[name][call][0]

    def output(self, name: str, call: int = 0) -> torch.Tensor:
        return self.calls[name][call][1]


# MLIC++ (JiangWeibeta/MLIC, MLIC++/models/mlicpp.py) -----------------------------------------

def _mlicpp_pass(codec):
    model = codec.entropy_model.eval()
    recorder = Recorder()
    recorder.watch("h_s", model.h_s)
    for i in range(1, model.num_slices):
        recorder.watch(f"local{i}", model.local_context[i])
        recorder.watch(f"intra{i}", model.global_intra_context[i])
        recorder.watch(f"inter{i}", model.global_inter_context[i])
        recorder.watch(f"channel{i}", model.channel_context[i])
        recorder.watch(f"ep_nonanchor{i}", model.entropy_parameters_nonanchor[i])
    torch.manual_seed(1)
    y = 3 * torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        out = model(y)
    return model, recorder, out


def test_mlicpp_nonanchor_parameters_see_local_intra_inter_channel_hyper_in_that_order():
    """The released ``entropy_parameters_nonanchor`` input: ``[local, intra, inter, channel, hyper]``."""
    torch.manual_seed(0)
    model, rec, _ = _mlicpp_pass(mlicpp(**MLIC_TINY))
    hyper = rec.output("h_s")
    for i in range(1, model.num_slices):
        expected = torch.cat([rec.output(f"local{i}"), rec.output(f"intra{i}"), rec.output(f"inter{i}"),
                              rec.output(f"channel{i}"), hyper], dim=1)
        torch.testing.assert_close(rec.inputs(f"ep_nonanchor{i}")[0], expected, rtol=0, atol=0)


def test_mlicpp_intra_context_attends_the_previous_slice():
    """``global_intra_context_k(y_hat_{k-1}, ...)``: slice k's intra context reads slice k - 1."""
    torch.manual_seed(0)
    model, rec, out = _mlicpp_pass(mlicpp(**MLIC_TINY))
    slices = out["y_hat"].chunk(model.num_slices, 1)
    for i in range(1, model.num_slices):
        torch.testing.assert_close(rec.inputs(f"intra{i}")[0], slices[i - 1], rtol=0, atol=0)
    assert not torch.equal(slices[0], slices[2])  # the probe tells the slices apart


def test_mlicpp_lrp_is_half_tanh():
    """LRP output ``0.5 tanh(.)``: saturating the last layer gives exactly +-0.5."""
    lrp = LatentResidualPrediction(8, 4, (8, 8))
    last = [m for m in lrp.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(50.0)
        high = lrp(torch.randn(1, 8, 3, 3))
        last.bias.fill_(-50.0)
        low = lrp(torch.randn(1, 8, 3, 3))
    assert torch.all(high == 0.5) and torch.all(low == -0.5)


# MLICv2 (a reconstruction; the constants its docstring states) ------------------------------

@pytest.mark.parametrize("build", ["codec", "entropy_model"])
def test_mlicv2_rope_base_is_10000_by_default(build):
    torch.manual_seed(0)
    if build == "codec":
        model = mlicv2(**MLIC_TINY, token_mixing=False).entropy_model
    else:
        model = MLICv2EntropyModel(**MLIC_TINY)
    x = torch.randn(8, dtype=torch.float64)
    out = model.rotary(x[None], torch.tensor([5.0]), torch.tensor([7.0]))[0]
    torch.testing.assert_close(out, _rotate_directly(x, 5, 7, 10000.0))


def test_mlicv2_selection_guide_is_four_log_scale_over_threshold():
    """``logit = net([log sigma', mu]) + 4 log(sigma' / tau)``, ``sigma' = max(sigma, 0.11)``, ``tau = 0.2``."""
    selector = SelectionNetwork(4, 0.2)
    with torch.no_grad():
        selector.net[-1].weight.zero_()
        selector.net[-1].bias.zero_()
    scales = torch.tensor([0.05, 0.11, 0.2, 0.5, 3.0]).reshape(1, 1, 1, 5).expand(1, 4, 1, 5)
    logits = selector(scales, torch.randn(1, 4, 1, 5))
    expected = 4 * torch.log(scales.clamp_min(0.11) / 0.2)
    torch.testing.assert_close(logits, expected)


# ACGC (S2LIC's released file) -----------------------------------------------------------------

def test_acgc_parameters_see_channel_then_global_then_hyper():
    """``F_i = [h_s(z_hat), CA_i, GA_i]`` in the released order ``[channel, global, hyper]``, for
    both the anchor and the non-anchor networks of every slice."""
    torch.manual_seed(0)
    model = ACGCEntropyModel(8, 20, num_slices=2, hidden=8).eval()
    rec = Recorder()
    rec.watch("h_s", model.h_s)
    rec.watch("channel", model.channel_wise_context[1])
    rec.watch("global", model.global_inter_context[1])
    rec.watch("anchor", model.entropy_parameters_anchor[1])
    rec.watch("nonanchor", model.entropy_parameters_nonanchor[1])
    with torch.no_grad():
        model(3 * torch.randn(1, 20, 8, 8))
    expected = torch.cat([rec.output("channel"), rec.output("global"), rec.output("h_s")], dim=1)
    for kind in ("anchor", "nonanchor"):
        torch.testing.assert_close(rec.inputs(kind)[0], expected, rtol=0, atol=0)


# McQuic (xiaosu-zhu/McQuic, mcquic/modules/quantizer.py and entropyCoder.py) -------------------

def test_mcquic_codebook_init_is_small_init():
    """SmallInit: ``normal(std = sqrt(2 / (5 C / m)))``."""
    torch.manual_seed(0)
    q = MultiCodebookQuantizer(128, 2, 8192)
    assert q.codebook.shape == (2, 8192, 64)
    assert float(q.codebook.detach().std()) == pytest.approx(math.sqrt(2 / (5 * 64)), rel=0.01)
    assert float(q.codebook.detach().mean()) == pytest.approx(0, abs=3e-3)


def test_mcquic_training_sample_is_a_hard_gumbel_softmax_at_temperature_one():
    """``gumbelSoftmax(logit, 1.0, hard=True)``: the straight-through gradient is the one of
    ``softmax(logit + g)`` with the same Gumbel noise."""
    torch.manual_seed(0)
    q = MultiCodebookQuantizer(8, 2, 16)
    x = torch.randn(1, 8, 2, 3, requires_grad=True)
    weights = torch.randn(1, 8, 2, 3)
    torch.manual_seed(5)
    (q(x)[0] * weights).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    logits = q.logits(x)
    torch.manual_seed(5)
    uniforms = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    soft = (logits - torch.log(-torch.log(uniforms))).softmax(-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    sample = hard - soft.detach() + soft
    (q.dequantize(sample) * weights).sum().backward()
    torch.testing.assert_close(ours, x.grad)


def test_mcquic_frequency_ema_is_the_official_normalised_rule():
    """3dc1a82 and HEAD: ``ema = (1 - d) * count / count.sum(-1) + d * ema`` from ``ones(m, k) / k``."""
    model = McQuicEntropyModel(channels=4, m=1, k=[4], ema=0.9)
    level = model.levels[0]
    assert torch.equal(level.freq_ema, torch.full((1, 4), 0.25))
    codes = [torch.tensor([0, 0, 0, 0, 0, 0, 0, 2, 2, 2]).reshape(1, 1, 2, 5)]  # counts 7, 0, 3, 0
    model.update_frequencies(codes)
    expected = 0.1 * torch.tensor([[0.7, 0.0, 0.3, 0.0]]) + 0.9 * 0.25
    torch.testing.assert_close(level.freq_ema, expected)
    model.update_frequencies(codes)
    torch.testing.assert_close(level.freq_ema, 0.1 * torch.tensor([[0.7, 0.0, 0.3, 0.0]]) + 0.9 * expected)


def test_mcquic_counts_rule_is_kept_for_older_files():
    model = McQuicEntropyModel(channels=4, m=1, k=[4], ema=0.9, ema_rule="counts")
    level = model.levels[0]
    assert torch.equal(level.freq_ema, torch.ones(1, 4))
    level.freq_ema.copy_(torch.tensor([[5.0, 5.0, 0.5, 2.0]]))
    model.update_frequencies([torch.tensor([0, 0, 0, 0, 0, 0, 0, 2, 2, 2]).reshape(1, 1, 2, 5)])
    assert torch.allclose(level.freq_ema, torch.tensor([[7.0, 4.5, 3.0, 1.8]]))


@pytest.mark.parametrize("rule", ["release", "head"])
def test_mcquic_reassigns_at_most_half_of_a_codebook(rule):
    """``if totalNeverAssigned > k // 2``: at most ``K / 2`` dead codewords are overwritten."""
    torch.manual_seed(0)
    model = McQuicEntropyModel(channels=4, m=2, k=[16], reassign_rule=rule)
    level = model.levels[0]
    freq = torch.zeros(2, 16)
    freq[0, :2] = torch.tensor([5.0, 3.0])  # 14 dead > 8
    freq[1] = torch.arange(1.0, 17.0)  # none dead
    level.freq_ema.copy_(freq)
    before = level.quantizer.codebook.detach().clone()
    fraction = model.reassign_dead_codewords(torch.Generator().manual_seed(3))
    moved = ((level.quantizer.codebook.detach() - before) ** 2).sum(-1) > 0
    assert int(moved[0].sum()) == 8 and not moved[1].any()
    assert fraction == pytest.approx(8 / 32)
    assert torch.equal(level.quantizer.codebook[0, :2], before[0, :2])  # used codewords stay


def test_mcquic_release_reassignment_draws_among_the_used_codewords():
    """3dc1a82: ``mostAssigned[randperm(len(mostAssigned))[:dead]]`` among the ``K - dead`` most used."""
    torch.manual_seed(0)
    model = McQuicEntropyModel(channels=4, m=1, k=[8])
    level = model.levels[0]
    level.freq_ema.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.5, 0.25]]))
    before = level.quantizer.codebook.detach().clone()
    sources = set()
    for seed in range(12):
        level.quantizer.codebook.data.copy_(before)
        model.reassign_dead_codewords(torch.Generator().manual_seed(seed))
        for dead in (4, 5):
            new = level.quantizer.codebook[0, dead].detach()
            match = [k for k in range(8) if torch.equal(new, before[0, k])]
            assert match and match[0] not in (4, 5)
            sources.add(match[0])
    assert len(sources) > 2  # drawn at random, not always the two most used


# QVRF (bytedance/QRAF, ScaleHyperprior.py) -----------------------------------------------------

QVRF_LMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18]
QVRF_GAINS = [1.0000, 1.3944, 1.9293, 2.6874, 3.7268, 5.1801, 7.1957, 10.0000]


def test_qvrf_official_gains_are_sqrt_lambda_ratios():
    for lmbda, gain in zip(QVRF_LMBDAS, QVRF_GAINS):
        assert math.sqrt(lmbda / QVRF_LMBDAS[0]) == pytest.approx(gain, abs=6e-5)


def test_qvrf_ladder_starts_every_gain_at_the_sqrt_rule_on_the_grid():
    ratio = GaussianConditional(scale_levels=256).grid_ratio
    bank = GainBank(8, grid_ratio=ratio, lmbdas=QVRF_LMBDAS)
    torch.testing.assert_close(bank.lmbdas, torch.tensor(QVRF_LMBDAS))
    k = bank.grid_steps()
    # Each gain is the grid point nearest the official initial gain (QVRF_GAINS, written out).
    expected = torch.tensor([round(math.log(g) / math.log(ratio)) for g in QVRF_GAINS], dtype=k.dtype)
    assert torch.equal(k, expected)
    assert torch.all((bank.gains() / torch.tensor(QVRF_GAINS)).log().abs() <= 0.5 * math.log(ratio) + 1e-6)


def test_default_64_level_gains_start_one_grid_step_apart():
    """The documented default (README, gain.py): adjacent lambdas 1.054x apart ask for a sqrt step
    below one grid step, so level l starts at exactly l grid steps (the sqrt rule applies nowhere)."""
    ratio = GaussianConditional(scale_levels=256).grid_ratio
    bank = GainBank(64, 0.0018, 0.0483, ratio)
    sqrt_steps = 0.5 * (bank.lmbdas / bank.lmbdas[0]).log() / math.log(ratio)
    assert torch.all(sqrt_steps[1:] < torch.arange(1.0, 64))
    assert torch.equal(bank.grid_steps(), torch.arange(64.0))
    assert float(bank.gains()[-1].detach()) == pytest.approx(ratio**63)


def test_gain_step_scales_values_scales_and_means():
    """QVRF codes ``g y`` under ``N(g mu, (g sigma)^2)`` and returns ``y_hat / g``."""
    seen = {}

    def step(y, scales, means, mask=None):
        seen.update(y=y, scales=scales, means=means)
        return torch.round(y - means) + means, None

    y, scales, means, gain = torch.tensor([1.3, -2.2]), torch.tensor([0.5, 2.0]), torch.tensor([0.4, -0.7]), torch.tensor(2.5)
    y_hat, _ = GainStep(step, gain)(y, scales, means)
    torch.testing.assert_close(seen["y"], y * gain)
    torch.testing.assert_close(seen["scales"], scales * gain)
    torch.testing.assert_close(seen["means"], means * gain)
    torch.testing.assert_close(y_hat, (torch.round(gain * (y - means)) + gain * means) / gain)


# cheng2020 (ZhengxueCheng/Learned-Image-Compression-with-GMM-and-Attention) -------------------

def test_cheng2020_entropy_parameters_use_tensorflows_leaky_relu():
    """``tf.nn.leaky_relu``: slope 0.2, probed through each activation of the network."""
    model = cheng2020_anchor(N=16).entropy_model
    activations = [m for m in model.entropy_parameters if isinstance(m, nn.LeakyReLU)]
    assert len(activations) == 2
    for activation in activations:
        torch.testing.assert_close(activation(torch.tensor([-1.0, 2.0])), torch.tensor([-0.2, 2.0]))
    legacy = cheng2020_anchor(N=16, leaky_slope=0.01).entropy_model
    assert all(m(torch.tensor([-1.0])).item() == pytest.approx(-0.01)
               for m in legacy.entropy_parameters if isinstance(m, nn.LeakyReLU))


def test_cheng2020_robust_tails_at_the_clip_edges():
    """edge_min/edge_max: at ``y = -255`` the mass below -254.5, at ``256`` the mass above 255.5."""
    model = cheng2020_anchor(N=16).entropy_model
    mixture = model.mixture
    assert mixture.edges == (-255.0, 256.0)
    params = torch.zeros(1, 9, 1, 1)
    params[:, 1] = -254.0  # component 0: mean -254, scale at its bound, weights equal
    params[:, 2] = 1.0
    params[:, 4] = 255.0
    params[:, 5] = 1.0
    params[:, 7] = 0.0
    params[:, 8] = 1.0
    values = torch.tensor([-255.0, 256.0]).reshape(1, 1, 1, 2)
    p = mixture.likelihood(values, params.expand(1, 9, 1, 2))
    normal = NormalDist()
    low = sum(normal.cdf((-254.5 - mu) / 1.0) for mu in (-254.0, 255.0, 0.0)) / 3
    high = sum(1 - normal.cdf((255.5 - mu) / 1.0) for mu in (-254.0, 255.0, 0.0)) / 3
    torch.testing.assert_close(p.flatten(), torch.tensor([low, high]), rtol=1e-5, atol=1e-7)
    plain = GaussianMixtureConditional(3)
    assert float(plain.likelihood(values, params.expand(1, 9, 1, 2)).flatten()[0]) < 0.9 * low  # no tail


# WaLLoC (the official notebook's latent mapping) -----------------------------------------------

def test_walloc_inverse_cdf_clip_is_1e4():
    """``y_hat = s Phi^-1(clip(q / 2L + 1/2, 1e-4, 1 - 1e-4))``: the extreme integers map to ``s Phi^-1(1 - 1e-4)``."""
    model = BoundedLatentImage(4, bits=8)
    q = torch.tensor([model.high, model.low], dtype=torch.float32) * 10  # beyond the limit: clipped
    out = model.decoder_input(q)
    edge = NormalDist().inv_cdf(1 - 1e-4) * model.scale
    torch.testing.assert_close(out, torch.tensor([edge, -edge]), rtol=1e-4, atol=1e-4)


# STEM (tinyvision/IPCodec, networks/IP_network.py) ----------------------------------------------

@pytest.mark.parametrize("spatial", ["none", "masked", "checkerboard"])
def test_stem_entropy_parameters_see_hyper_temporal_spatial(spatial):
    """The temporal prior's output (from ``y_hat_{t-1}``) reaches the entropy parameters next to
    ``h_s(z_hat)`` (and the spatial prior's): ``[hyper, temporal(, spatial)]`` channel for channel."""
    torch.manual_seed(0)
    model = SpatiotemporalEntropyModel(8, 12, spatial).train()
    rec = Recorder()
    rec.watch("h_s", model.h_s)
    rec.watch("temporal", model.temporal_prior)
    rec.watch("ep", model.entropy_parameters)
    y, reference = torch.randn(1, 12, 8, 8), torch.randn(1, 12, 8, 8)
    model(y, reference)
    torch.testing.assert_close(rec.inputs("temporal")[0], reference, rtol=0, atol=0)
    features = rec.inputs("ep")[0]
    torch.testing.assert_close(features[:, :24], rec.output("h_s"), rtol=0, atol=0)
    torch.testing.assert_close(features[:, 24:48], rec.output("temporal"), rtol=0, atol=0)


def test_stem_temporal_prior_changes_the_parameters_through_the_reference_alone():
    """A disconnected temporal input would leave the rate unchanged when only the temporal prior's
    weights change."""
    torch.manual_seed(0)
    model = SpatiotemporalEntropyModel(8, 12, "none").eval()
    y, reference = torch.randn(1, 12, 8, 8), torch.randn(1, 12, 8, 8)
    with torch.no_grad():
        before = model(y, reference)["likelihoods"]["y"]
        model.temporal_prior[-1].bias.add_(1.0)
        after = model(y, reference)["likelihoods"]["y"]
    assert not torch.allclose(before, after)


def test_stem_training_rate_and_context_see_the_rounded_residual():
    """Official training: the rate of the rounded residual and a spatial prior over ``round(r)``;
    on the reference grid (the default) the residual is ``round(r)`` and its mean ``round(mu)``, rounded
    around the means (``residual_grid="mean"``) ``round(r - mu) + mu``; ``"noise"`` (files before
    format 6) sees ``r + U(-1/2, 1/2)``."""
    torch.manual_seed(0)
    y, reference = 2 * torch.randn(1, 12, 8, 8), torch.randn(1, 12, 8, 8)
    r = y - reference
    model = SpatiotemporalEntropyModel(8, 12, "masked", mean_offsets=0).train()
    for grid in ("reference", "mean"):
        graded = SpatiotemporalEntropyModel(8, 12, "masked", residual_grid=grid, mean_offsets=0).train()
        graded.load_state_dict(model.state_dict())
        rec = Recorder()
        rec.watch("context", graded.context)
        rec.watch("ep", graded.entropy_parameters)
        out = graded(y, reference)
        torch.testing.assert_close(rec.inputs("context")[0], torch.round(r), rtol=0, atol=0)
        scales, means = rec.output("ep").chunk(2, 1)
        if grid == "reference":
            rounded, means = torch.round(r), torch.round(means)
        else:
            rounded = torch.round(r - means) + means
        expected = graded.gaussian_conditional.likelihood(rounded, scales, means)
        torch.testing.assert_close(out["likelihoods"]["y"].detach(), expected)  # the rounded residual's rate, no noise
    noisy = SpatiotemporalEntropyModel(8, 12, "masked", residual_rate="noise", context_input="noise", mean_offsets=0).train()
    noisy.load_state_dict(model.state_dict())
    rec = Recorder()
    rec.watch("context", noisy.context)
    noisy(y, reference)
    seen = rec.inputs("context")[0]
    assert not torch.equal(seen, torch.round(y - reference)) and (seen - (y - reference)).abs().max() <= 0.5
