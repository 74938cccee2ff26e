import compressai.models as cm
import pytest
import torch

from codeclab.codecs import (
    CODECS, Codec, bmshj2018_factorized, bmshj2018_hyperprior, build_codec, cheng2020_anchor, cheng2020_attn,
    from_compressai, load_compressai_state_dict, mbt2018, mbt2018_mean,
)
from codeclab.coding import get_coder
from codeclab.entropy_models.factorized import FactorizedEntropyModel
from codeclab.entropy_models.hyperprior import HyperpriorEntropyModel, ScaleHyperprior
from codeclab.entropy_models.latent_coding import quantize_symbols
from codeclab.formats.file_coding import pad_to_multiple
from tests.conftest import image_tensor

CODER = get_coder()

TINY = {"N": 16, "M": 24}
CLASSES = [
    (bmshj2018_factorized, cm.FactorizedPrior),
    (bmshj2018_hyperprior, cm.ScaleHyperprior),
    (mbt2018_mean, cm.MeanScaleHyperprior),
]


def test_registry_names_match_compressai_zoo():
    assert set(CODECS) >= {"bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"}
    codec = build_codec("mbt2018-mean", TINY)
    assert isinstance(codec, Codec) and codec.codec_id == "mbt2018-mean" and codec.config.items() >= TINY.items()
    assert codec.config["rate_levels"] == 0  # fixed rate unless asked
    assert type(codec.entropy_model) is HyperpriorEntropyModel  # mean-scale, no context
    assert type(build_codec("bmshj2018-hyperprior", TINY).entropy_model) is ScaleHyperprior
    assert type(build_codec("bmshj2018-factorized", TINY).entropy_model) is FactorizedEntropyModel


@pytest.mark.parametrize("cls, _", CLASSES)
def test_forward_shapes(cls, _):
    codec = cls(**TINY)
    x = torch.rand(2, 3, 64, 128)
    out = codec(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 24, 4, 8)
    if cls is not bmshj2018_factorized:
        assert out["likelihoods"]["z"].shape == (2, 16, 1, 2)
    assert all(((l > 0) & (l <= 1)).all() for l in out["likelihoods"].values())


@pytest.mark.parametrize("cls, reference", CLASSES)
def test_compressai_state_dict_loads(cls, reference):
    torch.manual_seed(0)
    ref = reference(**TINY)
    ref.update()
    codec = cls(**TINY)
    load_compressai_state_dict(codec, ref.state_dict())
    codec.eval(), ref.eval()
    compressai = get_coder("compressai")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(codec(x)["x_hat"], ref(x)["x_hat"])
        ours = codec.compress(x, compressai)
        theirs = ref.compress(x)
    # Same tables, same symbols, same coder: identical streams.
    assert ours.strings == [s[0] for s in theirs["strings"]]
    # The project's coder decodes to exactly the same reconstruction.
    expected = codec.decompress(ours, compressai)
    assert torch.equal(codec.decompress(codec.compress(x, CODER), CODER), expected)


def _converted_and_compared(make_codec, make_reference, photo):
    """A codec from ``make_codec()`` with the weights of compressai's ``make_reference()`` (loaded
    strictly; both built after one seed) and an image crop, after checking that both give the same
    reconstruction and likelihoods in eval mode. Returns ``(codec, ref, x)``."""
    torch.manual_seed(0)
    ref = make_reference()
    codec = make_codec()
    ref.update()
    load_compressai_state_dict(codec, ref.state_dict())
    codec.eval(), ref.eval()
    x = pad_to_multiple(image_tensor(photo), 64)[..., :128, :192]
    with torch.no_grad():
        ours, theirs = codec(x), ref(x)
    torch.testing.assert_close(ours["x_hat"], theirs["x_hat"])
    for name in ("y", "z"):
        torch.testing.assert_close(ours["likelihoods"][name], theirs["likelihoods"][name])
    return codec, ref, x


@pytest.mark.parametrize("build, reference, sizes", [
    (mbt2018, cm.JointAutoregressiveHierarchicalPriors, TINY),
    (cheng2020_anchor, cm.Cheng2020Anchor, {"N": 16, "components": 1}),  # compressai's single Gaussian
    (cheng2020_attn, cm.Cheng2020Attention, {"N": 16, "components": 1}),
], ids=["mbt2018", "cheng2020-anchor", "cheng2020-attn"])
def test_autoregressive_baselines_are_compressais(build, reference, sizes, photo):
    """Same likelihoods and reconstruction as compressai's model with its weights (strict loading:
    same layers, same names), the same stream from compressai's coder (same symbols, same order:
    position by position), and an exact round trip with the project's coder."""
    compressai_sizes = {k: v for k, v in sizes.items() if k != "components"}
    codec, ref, x = _converted_and_compared(lambda: build(**sizes), lambda: reference(**compressai_sizes), photo)
    with torch.no_grad():
        assert codec.compress(x, get_coder("compressai")).strings == [s[0] for s in ref.compress(x)["strings"]]
    compressed = codec.compress(x, CODER)
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, CODER), codec.quantize(x))
    assert not codec.entropy_model.portable
    mask = codec.entropy_model.context_prediction.mask[0, 0]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_elic_is_compressais_elic2022_official(photo):
    """compressai's elic2022-official weights load (its nested latent codecs mapped onto the flat
    SCCTX model) and give the same likelihoods and reconstruction in eval mode; the layer widths are
    its uneven groups and its parameter ramps; the latents round-trip exactly, in float and integer
    arithmetic."""
    from compressai.models.sensetime import Elic2022Official

    from codeclab.codecs import elic
    from codeclab.codecs.base import with_arithmetic

    codec, _, x = _converted_and_compared(lambda: elic(16, 160), lambda: Elic2022Official(N=16, M=160), photo)
    em = codec.entropy_model
    assert em.groups == [16, 16, 32, 64, 32] and em.hyper_quantizer == "ste" and em.quantizer == "ste"
    for arithmetic in ("float", "integer"):
        model = with_arithmetic(codec, arithmetic).eval()
        compressed = model.compress(x, CODER)
        assert torch.equal(model.decompress_y(compressed.strings, compressed.size, CODER), model.quantize(x))
    with torch.device("meta"):
        paper = elic().entropy_model
    assert paper.groups == [16, 16, 32, 64, 192]
    reference = Elic2022Official()  # N, M = 192, 320: every layer shape, under compressai's names
    mapped = {k.removeprefix("entropy_model."): tuple(v.shape)
              for k, v in from_compressai("elic", reference.state_dict()).items() if k.startswith("entropy_model.")}
    parameters = {k: tuple(v.shape) for k, v in paper.named_parameters()}
    assert len(parameters) > 80 and all(mapped.get(k) == shape for k, shape in parameters.items())


def _encoder_side_reconstruction(codec, x):
    """What the decoder must reproduce: g_s of the encoder's quantised latent."""
    em = codec.entropy_model
    with torch.no_grad():
        y = codec.g_a(x)
        if isinstance(em, FactorizedEntropyModel):
            medians = em.entropy_bottleneck.quantiles[:, 0, 1].view(1, -1, 1, 1)
            return codec.g_s(quantize_symbols(y, medians) + medians)
        z = em.h_a(em.hyper_input(y))
        medians = em.entropy_bottleneck.quantiles[:, 0, 1].view(1, -1, 1, 1)
        hyper = em.h_s(quantize_symbols(z, medians) + medians)
        # Scale hyperprior: h_s gives the scales, means are zero; mean-scale: (scales, means).
        means = torch.zeros_like(y) if isinstance(em, ScaleHyperprior) else hyper.chunk(2, 1)[1]
        return codec.g_s(quantize_symbols(y, means) + means)


@pytest.mark.parametrize("cls, _", CLASSES)
def test_roundtrip_latents_exact_and_matches_forward(cls, _, photo):
    torch.manual_seed(1)
    codec = cls(**TINY).eval()
    x = pad_to_multiple(image_tensor(photo), codec.downsampling)
    compressed = codec.compress(x, CODER)
    assert len(compressed.strings) == codec.num_streams and all(compressed.strings)
    x_hat = codec.decompress(compressed, CODER)
    assert torch.equal(x_hat, _encoder_side_reconstruction(codec, x))
    with torch.no_grad():
        torch.testing.assert_close(x_hat, codec(x)["x_hat"], atol=1e-4, rtol=0)


def test_compress_rejects_unpadded_input():
    with pytest.raises(ValueError, match="multiple of 64"):
        mbt2018_mean(**TINY).compress(torch.rand(1, 3, 64, 70), CODER)


@pytest.mark.parametrize("build", [mbt2018_mean, bmshj2018_hyperprior])
def test_compress_refuses_a_batch_instead_of_coding_image_0_only(build):
    with pytest.raises(ValueError, match="one image at a time; got a batch of 2"):
        build(**TINY).eval().compress(torch.rand(2, 3, 64, 64), CODER)


def test_tables_rebuilt_when_parameters_change():
    codec = mbt2018_mean(**TINY).eval()
    x = torch.rand(1, 3, 64, 64)
    codec.compress(x, CODER)  # builds tables; no "run update() first"
    assert codec.tables_are_current()
    with torch.no_grad():
        codec.entropy_model.entropy_bottleneck.quantiles.add_(0.5)
    assert not codec.tables_are_current()
    first_cdf = codec.entropy_model.entropy_bottleneck._quantized_cdf.clone()
    compressed = codec.compress(x, CODER)
    assert codec.tables_are_current()
    assert not torch.equal(first_cdf, codec.entropy_model.entropy_bottleneck._quantized_cdf)
    assert torch.equal(codec.decompress(compressed, CODER), _encoder_side_reconstruction(codec, x))
