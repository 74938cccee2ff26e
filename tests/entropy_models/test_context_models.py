"""Context entropy models (hyperprior, checkerboard, ChARM, ACGC, MLIC++, MLICv2): exact coding and pass counts."""

import pytest
import torch

import codeclab.compat  # noqa: F401  (registers the first versions older model files build)
from codeclab.codecs import Codec, s2lic
from codeclab.coding import get_coder
from codeclab.entropy_models import ENTROPY_MODELS
from codeclab.entropy_models.base import checkerboard_masks
from codeclab.entropy_models.hyperprior import HyperpriorEntropyModel
from codeclab.errors import CodecLabError
from codeclab.formats.file_coding import pad_to_multiple
from tests.conftest import image_tensor

CODER = get_coder()

SLICES = 2
ENTROPY = {
    "hyperprior": {"name": "hyperprior"},
    "scale_hyperprior": {"name": "scale_hyperprior"},
    "autoregressive": {"name": "autoregressive"},
    # Minnen et al.'s paper: round(y) coded under N(mu, sigma) (a one-component mixture).
    "autoregressive-integer": {"name": "autoregressive", "rounding": "integer"},
    "checkerboard": {"name": "checkerboard", "hidden": 24},
    "elic": {"name": "elic", "groups": [4, 4, 8, 16]},
    "charm": {"name": "charm", "num_slices": SLICES, "max_support": 1, "hidden": 16},
    "acgc": {"name": "acgc", "num_slices": SLICES, "hidden": 16},
    # CodecLab's first versions (codeclab.compat), which older model files build.
    "charm_v1": {"name": "charm_v1", "num_slices": SLICES, "max_support": 1, "hidden": 16},
    "acgc_v1": {"name": "acgc_v1", "num_slices": SLICES, "hidden": 16, "attention_dim": 8, "heads": 2},
    # Latents larger than the global attention's grid: keys/values are pooled.
    "acgc-pooled": {"name": "acgc", "num_slices": SLICES, "hidden": 16, "global_grid": 3},
    "mlicpp": {"name": "mlicpp", "num_slices": SLICES, "parameter_hidden": [24, 16, 16], "channel_hidden": [16, 16],
               "lrp_hidden": [16, 16]},
    # Every MLICv2 switch on (a reconstruction; tests/entropy_models/test_mlicv2.py tests each switch).
    "mlicv2": {"name": "mlicv2", "num_slices": SLICES, "parameter_hidden": [24, 16, 16], "channel_hidden": [16, 16],
               "lrp_hidden": [16, 16]},
}


def tiny_codec(entropy: str, transform: str = "cnn") -> Codec:
    torch.manual_seed(0)
    return s2lic(N=16, M=32, transform=transform, window=4, depths=[1, 1, 1], heads=[1, 2, 2],
                 entropy=ENTROPY[entropy])


def test_every_registered_entropy_model_is_tested():
    # Every hyperprior-based (N, M) entropy model, i.e. every one an s2lic codec can use, is tested here;
    # the others are tested with their codecs (factorized: tests/codecs/test_codecs.py and
    # test_walloc.py, bounded: test_walloc.py, vq: test_vqgan.py, mcquic: test_mcquic.py; spatiotemporal,
    # which codes a latent given a reference: test_spatiotemporal.py; hclt, the lossless circuit:
    # tests/lossless/test_hclt.py).
    hyperprior_based = {name for name in ENTROPY_MODELS if issubclass(ENTROPY_MODELS[name], HyperpriorEntropyModel)}
    # autoregressive_v1 (cheng2020's first mixture): tests/entropy_models/test_mixture.py.
    hyperprior_based -= {"spatiotemporal", "autoregressive_v1"}
    assert hyperprior_based == {options["name"] for options in ENTROPY.values()}
    assert set(ENTROPY_MODELS) - hyperprior_based == {
        "factorized", "bounded", "bounded_v1", "vq", "mcquic", "spatiotemporal", "autoregressive_v1", "hclt"}


def test_checkerboard_masks_partition_the_grid():
    anchor, non_anchor = checkerboard_masks(5, 6)
    assert (anchor ^ non_anchor).all() and anchor.sum() == 15
    assert anchor[0, 0] and not anchor[0, 1] and anchor[1, 1]


@pytest.mark.parametrize("entropy", list(ENTROPY))
def test_decoder_reproduces_encoder_latent_exactly(entropy, photo):
    codec = tiny_codec(entropy).eval()
    x = pad_to_multiple(image_tensor(photo), codec.downsampling)  # 128 x 192: y is 8 x 12
    codec.ensure_tables()
    with torch.no_grad():
        y = codec.g_a(x)
        strings, y_hat_encoder = codec.entropy_model.compress(y, CODER)
        y_hat_decoder = codec.entropy_model.decompress(strings, y.shape[-2:], CODER)
        x_hat_forward = codec(x)["x_hat"]
    assert torch.equal(y_hat_decoder, y_hat_encoder)
    assert not torch.equal(y_hat_encoder, y)  # really quantised, so the check is not vacuous
    if entropy in ("hyperprior", "scale_hyperprior", "checkerboard", "autoregressive", "elic"):  # no LRP
        assert (y_hat_encoder - y).abs().max() <= 0.5 + 1e-5
    if entropy == "autoregressive-integer":
        assert torch.equal(y_hat_encoder, torch.round(y))
    # Full codec: same streams, same reconstruction, and the eval forward pass agrees.
    compressed = codec.compress(x, CODER)
    assert compressed.strings == strings and len(strings) == codec.num_streams
    x_hat = codec.decompress(compressed, CODER)
    with torch.no_grad():
        assert torch.equal(x_hat, codec.g_s(y_hat_encoder))
    if entropy == "autoregressive":  # compressai's eval pass reconstructs round(y), not round(y - mu) + mu
        with torch.no_grad():
            torch.testing.assert_close(x_hat_forward, codec.g_s(torch.round(y)), atol=1e-6, rtol=0)
        return
    torch.testing.assert_close(x_hat, x_hat_forward, atol=1e-4, rtol=0)


@pytest.mark.parametrize("entropy", list(ENTROPY))
def test_other_coder_decodes_to_the_same_latent(entropy):
    codec = tiny_codec(entropy).eval()
    x = torch.rand(1, 3, 64, 128)
    compressai = get_coder("compressai")
    if entropy == "autoregressive-integer":  # per-element frequencies: the categorical mode, CodecLab's coder only
        with pytest.raises(CodecLabError, match="cannot code categorical symbols"):
            codec.compress(x, compressai)
        return
    expected = codec.decompress(codec.compress(x, CODER), CODER)
    assert torch.equal(codec.decompress(codec.compress(x, compressai), compressai), expected)


def _count_calls(modules) -> list[int]:
    counts = [0] * len(modules)
    for i, module in enumerate(modules):
        module.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize(
    "entropy, networks, passes",
    [
        ("checkerboard", lambda m: [m.entropy_parameters], 2),  # anchors, then non-anchors
        ("charm", lambda m: list(m.mean_transforms), 1),  # one pass per slice
        # checkerboard inside every slice: the anchor and the non-anchor network once each
        ("acgc", lambda m: [*m.entropy_parameters_anchor, *m.entropy_parameters_nonanchor], 1),
    ],
)
def test_decoding_network_passes(entropy, networks, passes):
    codec = tiny_codec(entropy).eval()
    compressed = codec.compress(torch.rand(1, 3, 64, 64), CODER)
    counts = _count_calls(networks(codec.entropy_model))
    codec.decompress(compressed, CODER)
    assert counts == [passes] * len(counts)
    assert len(counts) == {"checkerboard": 1, "charm": SLICES, "acgc": 2 * SLICES}[entropy]


@pytest.mark.parametrize("entropy", list(ENTROPY))
def test_training_forward_likelihoods_and_gradients(entropy):
    codec = tiny_codec(entropy).train()
    with torch.no_grad():  # a random h_a gives |z| < 0.1; a straight-through rounded z (ChARM) of
        codec.entropy_model.h_a[-1].weight.mul_(100)  # all zeros would leave h_s's first weights without gradient
    x = torch.rand(2, 3, 64, 64)
    out = codec(x)
    assert out["likelihoods"]["y"].shape == (2, 32, 4, 4) and out["likelihoods"]["z"].shape == (2, 16, 1, 1)
    assert all(((l > 0) & (l <= 1)).all() for l in out["likelihoods"].values())
    bits = sum(-torch.log2(l).sum() for l in out["likelihoods"].values())
    (bits + ((out["x_hat"] - x) ** 2).sum()).backward()
    # Every entropy-model parameter is trained by this loss (the quantiles train on the aux loss).
    silent = [n for n, p in codec.named_parameters()
              if "entropy_model" in n and not n.endswith("quantiles") and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not silent


@pytest.mark.parametrize("entropy", ["acgc", "autoregressive-integer"])
def test_rate_estimate_matches_real_stream(entropy, photo):
    """The eval-mode likelihoods predict the coded size of y (checks the coded distributions: for
    the integer rounding, the one-component mixture's parameter order and the scale bound)."""
    codec = tiny_codec(entropy).eval()
    x = pad_to_multiple(image_tensor(photo), codec.downsampling)
    with torch.no_grad():
        estimated = float(-torch.log2(codec(x)["likelihoods"]["y"]).sum()) / 8
    real = len(codec.compress(x, CODER).strings[0])
    assert abs(real - estimated) <= 0.05 * estimated + 64


def test_autoregressive_roundings_share_weights_and_training():
    """``rounding`` changes only what is coded: the same parameters load, and a training step is identical."""
    mean, integer = tiny_codec("autoregressive").train(), tiny_codec("autoregressive-integer").train()
    integer.load_state_dict(mean.state_dict())
    x = torch.rand(1, 3, 64, 64)
    torch.manual_seed(1)
    a = mean(x)
    torch.manual_seed(1)
    b = integer(x)
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])
    with pytest.raises(ValueError, match="rounding must be 'mean' or 'integer'"):
        ENTROPY_MODELS.build("autoregressive", N=8, M=8, rounding="floor")
