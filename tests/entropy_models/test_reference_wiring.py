"""The context models as their reference code defines them: layer shapes against the official
definitions (ChARM: tensorflow/compression models/ms2020.py; checkerboard: compressai's
entropy-parameter widths), the slice-support limit, LRP's bound and what the hyper-synthesis sees
in training. Each test fails if the constant or wiring it names changes."""

import pytest
import torch
from compressai.models import JointAutoregressiveHierarchicalPriors
from torch import nn

from codeclab.compat.entropy_models import ChannelwiseEntropyModelV1
from codeclab.entropy_models.base import LatentStep
from codeclab.entropy_models.channelwise import ChannelwiseEntropyModel
from codeclab.entropy_models.checkerboard import CheckerboardEntropyModel
from codeclab.entropy_models.hyperprior import HyperpriorEntropyModel
from codeclab.entropy_models.latent_coding import quantize_factorized


def _conv_shapes(module: nn.Module) -> list[tuple]:
    return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_checkerboard_entropy_parameters_have_he_and_compressai_widths():
    with torch.device("meta"):
        ours = CheckerboardEntropyModel(192, 320).entropy_parameters
    reference = JointAutoregressiveHierarchicalPriors(192, 320).entropy_parameters  # compressai builds on the CPU
    assert _conv_shapes(ours) == _conv_shapes(reference) == [(1066, 1280, 1, 1), (853, 1066, 1, 1), (640, 853, 1, 1)]


def _ms2020_slice(in_channels: int, out_channels: int) -> list[tuple]:
    # ms2020.SliceTransform: conv(224, 5x5) relu, conv(128, 5x5) relu, conv(slice_depth, 3x3)
    return [(224, in_channels, 5, 5), (128, 224, 5, 5), (out_channels, 128, 3, 3)]


def test_charm_layers_are_ms2020s_at_its_sizes():
    with torch.device("meta"):
        model = ChannelwiseEntropyModel(192, 320)  # ms2020: num_filters 192, latent 320, 10 slices, support 5
    s = 32
    for i in range(10):
        support = 320 + s * min(i, 5)  # latent means/scales + at most 5 decoded slices
        assert _conv_shapes(model.mean_transforms[i]) == _ms2020_slice(support, s)
        assert _conv_shapes(model.scale_transforms[i]) == _ms2020_slice(support, s)
        assert _conv_shapes(model.lrp_transforms[i]) == _ms2020_slice(support + s, s)  # + the decoded slice
    # HyperSynthesisTransform, twice (mean and scale): 192 (5x5 up), 256 (5x5 up), 320 (3x3), ReLU after each.
    hyper = [(192, 192, 5, 5), (192, 256, 5, 5), (320, 256, 3, 3)]
    assert _conv_shapes(model.h_s.scale) == _conv_shapes(model.h_s.mean) == hyper
    assert [type(m) for m in model.h_s.mean][1::2] == [nn.ReLU] * 3
    assert model.hyper_quantizer == "ste" and model.quantizer == "ste"


def test_charm_v1_keeps_the_first_architecture():
    with torch.device("meta"):
        model = ChannelwiseEntropyModelV1(16, 40, num_slices=4, hidden=8)
    assert _conv_shapes(model.mean_transforms[1]) == [(8, 50, 3, 3), (4, 8, 3, 3), (10, 4, 3, 3)]
    assert model.hyper_quantizer == "noise" and not hasattr(model.h_s, "mean")


def test_charm_support_limit_and_lrp_bound_in_the_coding_loop():
    torch.manual_seed(0)
    model = ChannelwiseEntropyModel(8, 40, num_slices=10, max_support=5).eval()
    seen, corrections = [], []
    for i, transform in enumerate(model.mean_transforms):
        transform.register_forward_hook(lambda m, args, out, i=i: seen.append((i, args[0].shape[1])))
    for lrp in model.lrp_transforms:
        lrp.register_forward_hook(lambda m, args, out: corrections.append(out))
        with torch.no_grad():
            lrp.net[-1].bias.fill_(100.0)  # saturate: 0.5 tanh must cap the correction at 1/2
    model.quantize(torch.randn(1, 40, 4, 4) * 3)
    assert seen == [(i, 40 + 4 * min(i, 5)) for i in range(10)]  # slices >= 5 see only the first 5
    assert len(corrections) == 10
    assert all(torch.equal(c, torch.full_like(c, 0.5)) for c in corrections)


@pytest.mark.parametrize("model, rounded", [
    (lambda: ChannelwiseEntropyModel(8, 40, num_slices=4), True),
    (lambda: HyperpriorEntropyModel(8, 16), False),
])
def test_what_the_hyper_synthesis_sees_in_training(model, rounded):
    torch.manual_seed(0)
    model = model().train()
    seen = []
    model.h_s.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    y = torch.randn(2, model.M, 8, 8) * 4
    model(y)
    z = model.h_a(y).detach()
    on_grid = torch.equal(seen[0], quantize_factorized(model.entropy_bottleneck, z))
    assert on_grid == rounded


def test_acgc_wiring_and_names_follow_the_released_s2lic_file():
    """code/s2lic.py (wyq2021/S2LIC) at N, M = 192, 320, 10 slices of 32 channels."""
    from codeclab.entropy_models.acgc import ACGCEntropyModel

    with torch.device("meta"):
        model = ACGCEntropyModel(192, 320)
    M, s = 320, 32
    assert model.channel_wise_context[0] is None and model.global_inter_context[0] is None
    for i in range(1, 10):
        channel, inter = model.channel_wise_context[i], model.global_inter_context[i]
        assert channel.qkv.in_channels == s * i and channel.proj.out_channels == 2 * s and channel.heads == i
        assert inter.query.in_channels == s * i and inter.key_value.in_channels == s * i  # decoded slices only
        assert inter.proj.out_channels == s and inter.heads == i
    for i in range(10):
        for network in (model.entropy_parameters_anchor[i], model.entropy_parameters_nonanchor[i]):
            convs = [m for m in network if isinstance(m, nn.Conv2d)]
            assert convs[0].in_channels == 2 * M + (3 * s if i else 0) and convs[-1].out_channels == 2 * s
        for lrp in (model.lrp_anchor[i], model.lrp_nonanchor[i]):
            assert lrp.net[0].in_channels == M + (i + 1) * s and lrp.net[-1].out_channels == s
    assert model.hyper_quantizer == "ste" and not hasattr(model, "spatial_contexts")
    names = {name.split(".")[0] for name in model.state_dict()}
    assert {"channel_wise_context", "global_inter_context", "entropy_parameters_anchor", "entropy_parameters_nonanchor",
            "lrp_anchor", "lrp_nonanchor"} <= names


class MaskRecordingStep(LatentStep):
    """A decoding step that records the mask of every group, in coding order (decodes zeros)."""

    def __init__(self):
        self.masks = []

    def __call__(self, y, scales, means, mask=None):
        self.masks.append(mask.clone())
        return torch.zeros_like(means), None

    def _group(self, y, scales, means):
        raise AssertionError


def test_acgc_codes_anchors_at_odd_positions_first_then_the_rest():
    from codeclab.entropy_models.acgc import ACGCEntropyModel

    torch.manual_seed(0)
    model = ACGCEntropyModel(8, 20, num_slices=2, hidden=8).eval()
    step = MaskRecordingStep()
    with torch.no_grad():
        model.code_latent(None, torch.randn(1, 40, 4, 4), step)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    odd = (rows + cols) % 2 == 1
    assert [torch.equal(m, odd) for m in step.masks] == [True, False, True, False]
    assert all(torch.equal(m, ~odd) for m in step.masks[1::2])
