"""The registered codecs: each one a configuration of :class:`~.base.Codec` (transform pair +
entropy model), under the name written into model files and bitstreams.

| name                   | transform (``g_a``/``g_s``)     | entropy model                      |
| ---------------------- | ------------------------------- | ---------------------------------- |
| ``bmshj2018-factorized`` | ``cnn`` (Ballé 2017/2018)     | ``factorized``                     |
| ``bmshj2018-hyperprior`` | ``cnn``                       | ``scale_hyperprior``               |
| ``mbt2018-mean``         | ``cnn``                       | ``hyperprior`` (mean-scale)        |
| ``mbt2018``              | ``cnn``                       | ``autoregressive``                 |
| ``cheng2020-anchor``, ``-attn`` | ``cheng2020``          | ``autoregressive`` (Cheng's hyper) |
| ``elic``                 | ``elic``                      | ``elic`` (SCCTX)                   |
| ``s2lic``                | ``swinv2`` (or ``cnn``)       | ``acgc`` (or any hyperprior-based) |
| ``mlicpp``               | ``mlicpp`` (GELU residual blocks) | ``mlicpp`` (multi-reference)   |
| ``mlicv2`` (reconstruction) | ``mlicv2`` (+ token mixing)  | ``mlicv2`` (MLIC++ + 4 switches) |
| ``walloc``               | ``walloc`` (wavelet packets)  | ``bounded`` or ``factorized``      |
| ``vqgan``                | ``vqgan`` (taming)            | ``vq`` (:mod:`.vqgan`)             |
| ``mcquic``               | ``mcquic`` (McQuic's blocks)  | ``mcquic`` (:mod:`.mcquic`)        |
| ``composed``             | any                             | any                                |

The compressai family uses compressai's published widths (``N, M = 128, 192`` for the low
rates, ``192, 320`` for the high rates) and trains like compressai (``quantizer="noise"``); its
state_dicts convert to and from compressai's with :mod:`.compressai_interop`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..entropy_models import ENTROPY_MODELS
from ..entropy_models.autoregressive import AutoregressiveEntropyModel
from ..entropy_models.elic import ElicEntropyModel
from ..entropy_models.factorized import FactorizedEntropyModel
from ..entropy_models.hyperprior import HyperpriorEntropyModel, ScaleHyperprior
from ..entropy_models.mlicpp import MLICPlusPlusEntropyModel
from ..entropy_models.mlicv2 import MLICv2EntropyModel
from ..transforms import TRANSFORMS
from ..transforms.cheng import cheng2020_transforms
from ..transforms.cnn import cnn_transforms
from ..transforms.elic import elic_transforms
from ..transforms.mlicpp import mlicpp_transforms
from ..transforms.mlicv2 import mlicv2_transforms
from .base import Codec, register_codec


def _codec(pair, entropy_model) -> Codec:
    return Codec(pair.g_a, pair.g_s, entropy_model, pair.stride)


def _spec(part: str | Mapping) -> tuple[str, dict]:
    """A part given as a registry name or as ``{"name": ..., **options}``: ``(name, options)``."""
    options = dict(part) if isinstance(part, Mapping) else {"name": part}
    return options.pop("name"), options


@register_codec("bmshj2018-factorized")
def bmshj2018_factorized(N: int = 128, M: int = 192) -> Codec:
    """Ballé et al., "End-to-end Optimized Image Compression", ICLR 2017 (GDN transforms,
    factorized prior). ``y``: ``[B, M, H/16, W/16]``; one stream."""
    return _codec(cnn_transforms(N, M), FactorizedEntropyModel(M))


@register_codec("bmshj2018-hyperprior")
def bmshj2018_hyperprior(N: int = 128, M: int = 192, arithmetic: str = "float") -> Codec:
    """Ballé et al., "Variational image compression with a scale hyperprior", ICLR 2018.
    ``y``: ``[B, M, H/16, W/16]``, ``z``: ``[B, N, H/64, W/64]``; streams ``[y, z]``.
    ``arithmetic="integer"``: exact hyper-synthesis (:mod:`codeclab.entropy_models.integer`)."""
    return _codec(cnn_transforms(N, M), ScaleHyperprior(N, M, arithmetic=arithmetic))


@register_codec("mbt2018-mean")
def mbt2018_mean(N: int = 128, M: int = 192, rate_levels: int = 0, lmbda_min: float = 0.0018, lmbda_max: float = 0.0483,
                 scale_table_levels: int = 64, arithmetic: str = "float", lmbdas: Sequence[float] | None = None) -> Codec:
    """Minnen et al., NeurIPS 2018, mean-scale hyperprior without the autoregressive context.
    ``rate_levels > 0``: one variable-rate model (QVRF gains, :mod:`codeclab.entropy_models.gain`;
    ``lmbdas``: an explicit ladder of ``rate_levels`` lambdas instead of a log-spaced one, e.g.
    QVRF's official 8, ``codec=mbt2018_mean_qvrf``).
    ``arithmetic="integer"``: exact hyper-synthesis (:mod:`codeclab.entropy_models.integer`)."""
    rate = dict(rate_levels=rate_levels, lmbda_min=lmbda_min, lmbda_max=lmbda_max, scale_table_levels=scale_table_levels)
    if lmbdas is not None:
        rate["lmbdas"] = [float(v) for v in lmbdas]
    return _codec(cnn_transforms(N, M), HyperpriorEntropyModel(N, M, arithmetic=arithmetic, **rate))


@register_codec("mbt2018")
def mbt2018(N: int = 192, M: int = 192, rounding: str = "mean") -> Codec:
    """Minnen et al., NeurIPS 2018: mean-scale hyperprior + 5x5 autoregressive context, decoded
    position by position (compressai's ``mbt2018``; N, M = 192, 192 up to lambda = 0.0130,
    192, 320 above). ``rounding``: ``"mean"`` codes ``round(y - mu)`` as compressai,
    ``"integer"`` codes ``round(y)`` as the paper (:mod:`codeclab.entropy_models.autoregressive`).
    Not portable: its context network is float."""
    return _codec(cnn_transforms(N, M), AutoregressiveEntropyModel(N, M, rounding=rounding))


@register_codec("cheng2020-anchor")
def cheng2020_anchor(N: int = 192, components: int = 3, leaky_slope: float = 0.2, robust_tails: bool = True,
                     entropy: str = "autoregressive") -> Codec:
    """Cheng et al., CVPR 2020: residual-block transforms and the autoregressive context of
    mbt2018 with the paper's discretized Gaussian mixture of ``components`` (3) Gaussians, as the
    official code; ``components=1`` is compressai's ``cheng2020-anchor`` (a single Gaussian; its
    weights load). ``M = N`` (128 up to lambda = 0.0067, 192 above). ``leaky_slope`` (0.2,
    ``tf.nn.leaky_relu``) and ``robust_tails`` (the official ``edge_min``/``edge_max``) for the
    mixture. ``entropy``: the registered entropy model (older model files name CodecLab's first
    mixture, ``autoregressive_v1``)."""
    return _codec(cheng2020_transforms(N), _cheng2020_entropy(N, components, leaky_slope, robust_tails, entropy))


@register_codec("cheng2020-attn")
def cheng2020_attn(N: int = 192, components: int = 3, leaky_slope: float = 0.2, robust_tails: bool = True,
                   entropy: str = "autoregressive") -> Codec:
    """:func:`cheng2020_anchor` with simplified attention blocks in the transforms
    (``components=1``: compressai's ``cheng2020-attn``)."""
    return _codec(cheng2020_transforms(N, attention=True),
                  _cheng2020_entropy(N, components, leaky_slope, robust_tails, entropy))


def _cheng2020_entropy(N: int, components: int, leaky_slope: float, robust_tails: bool, entropy: str):
    return ENTROPY_MODELS.build(entropy, N, N, hyper="cheng2020", components=components, leaky_slope=leaky_slope,
                                robust_tails=robust_tails)


@register_codec("elic")
def elic(N: int = 192, M: int = 320, groups: Sequence[int] | None = None, arithmetic: str = "float") -> Codec:
    """He et al., CVPR 2022, as compressai's ``elic2022-official``: residual-bottleneck and
    attention transforms, the space-channel context over uneven groups
    (:mod:`codeclab.entropy_models.elic`; default ``16, 16, 32, 64, M - 128``)."""
    return _codec(elic_transforms(N, M), ElicEntropyModel(N, M, groups, arithmetic=arithmetic))


@register_codec("s2lic")
def s2lic(N: int = 192, M: int = 320, transform: str | Mapping = "swinv2", window: int = 8,
          depths: Sequence[int] = (1, 2, 3), heads: Sequence[int] = (4, 8, 16), entropy: Mapping | None = None) -> Codec:
    """S2LIC (Wang et al.): SwinV2 transforms + the ACGC entropy model, or any transform
    (``transform="cnn"``, or ``{"name": ..., **options}``) with any hyperprior-based entropy model
    (``entropy={"name": ..., **options}``). Defaults are the paper's; a SwinV2 transform
    (``swinv2``, ``swinv2_v1``) also takes ``window``, ``depths``, ``heads``. ``y``:
    ``[B, M, H/16, W/16]``, streams ``[y, z]``."""
    name, options = _spec(transform)
    if name.startswith("swinv2"):
        options.update(window=window, depths=depths, heads=heads)
    entropy_name, entropy_options = _spec(entropy or "acgc")
    return _codec(TRANSFORMS.build(name, N, M, **options), ENTROPY_MODELS.build(entropy_name, N, M, **entropy_options))


@register_codec("mlicpp")
def mlicpp(N: int = 192, M: int = 320, num_slices: int = 10, window: int = 5,
           parameter_hidden: Sequence[int] = (320, 256, 128), channel_hidden: Sequence[int] = (192, 128),
           lrp_hidden: Sequence[int] = (224, 128), quantizer: str = "ste", rate_levels: int = 0) -> Codec:
    """MLIC++ (Jiang & Wang, ICML 2023 NCW) as the released code (JiangWeibeta/MLIC, ``MLIC++/``):
    GELU residual-block transforms (:mod:`codeclab.transforms.mlicpp`) and the multi-reference
    entropy model (:mod:`codeclab.entropy_models.mlicpp`; 10 slices x 32 channels, checkerboard,
    channel + linear global inter/intra + local window contexts, LRP). Defaults are the paper's
    (83.5M parameters); the widths are arguments for small test models. ``y``: ``[B, M, H/16, W/16]``,
    streams ``[y, z]``; the released ``state_dict`` loads through :mod:`.mlicpp_interop`."""
    entropy_model = MLICPlusPlusEntropyModel(
        N, M, num_slices, window, parameter_hidden, channel_hidden, lrp_hidden, quantizer, rate_levels=rate_levels)
    return _codec(mlicpp_transforms(N, M), entropy_model)


@register_codec("mlicv2")
def mlicv2(N: int = 192, M: int = 320, num_slices: int = 10, window: int = 5,
           parameter_hidden: Sequence[int] = (320, 256, 128), channel_hidden: Sequence[int] = (192, 128),
           lrp_hidden: Sequence[int] = (224, 128), quantizer: str = "ste", rate_levels: int = 0,
           token_mixing: bool = True, token_mixing_depth: int = 2, hyper_global: bool = True,
           channel_reweighting: bool = True, rope: bool = True, selective: bool = False,
           reweighting_reduction: int = 16, rope_base: float = 10000.0, selective_threshold: float = 0.2) -> Codec:
    """MLICv2 (Jiang et al., arXiv:2504.19119, 2025), a RECONSTRUCTION from the paper (no code is
    released) on top of :func:`mlicpp`: token-mixing transforms (:mod:`codeclab.transforms.mlicv2`)
    and MLIC++'s entropy model with hyperprior-guided global contexts for the first slice, channel
    reweighting, 2D RoPE and guided selective compression (:mod:`codeclab.entropy_models.mlicv2`),
    each a switch; every switch off is :func:`mlicpp` exactly. ``y``: ``[B, M, H/16, W/16]``,
    streams ``[y, z]``."""
    entropy_model = MLICv2EntropyModel(
        N, M, num_slices, window, parameter_hidden, channel_hidden, lrp_hidden, quantizer, hyper_global=hyper_global,
        channel_reweighting=channel_reweighting, rope=rope, selective=selective,
        reweighting_reduction=reweighting_reduction, rope_base=rope_base, selective_threshold=selective_threshold,
        rate_levels=rate_levels)
    return _codec(mlicv2_transforms(N, M, token_mixing, token_mixing_depth), entropy_model)


@register_codec("walloc")
def walloc(levels: int = 3, latent_channels: int = 12, wavelet: str = "bior4.4", bottleneck: str = "bounded",
           bits: int = 8, lossless_format: str = "webp_rgb", encoder_hidden: int = 0, decoder_channels: int = 768,
           decoder_groups: int = 32, transform: str | Mapping = "walloc") -> Codec:
    """WaLLoC (Jacobellis & Yadwadkar 2024): wavelet packets + a linear encoder, and either the
    paper's bounded latent stored as a lossless image (``bottleneck="bounded"``, or another
    registered entropy model of ``(latent_channels, bits, lossless_format)``; ``lossless_format``:
    the official three-plane lossless WebP ``"webp_rgb"``, or a grayscale ``"png"`` / ``"webp"``
    mosaic; :mod:`~codeclab.entropy_models.bounded`) or a factorized prior coded by rANS
    (``"factorized"``). Dimension reduction ``3 * 4**levels / latent_channels``. ``transform``: a
    registered transform name or ``{"name": ..., **options}``, given ``levels`` ... ``decoder_channels``;
    the official ``"walloc"`` (diffusers' AutoencoderKL decoder, width ``decoder_channels`` = 768)
    also takes ``decoder_groups`` (its GroupNorm). Older model files name CodecLab's first parts
    (``bounded_v1``, ``walloc_v1``)."""
    if bottleneck == "factorized":
        entropy_model = FactorizedEntropyModel(latent_channels, init_scale=10)
    else:
        entropy_model = ENTROPY_MODELS.build(bottleneck, latent_channels, bits, lossless_format)
    name, options = _spec(transform)
    if name == "walloc":
        options["decoder_groups"] = decoder_groups
    return _codec(TRANSFORMS.build(name, levels, latent_channels, wavelet, encoder_hidden, decoder_channels, **options),
                  entropy_model)


@register_codec("composed")
def compose(transform: Mapping, entropy: Mapping) -> Codec:
    """Any registered transform with any registered entropy model, both given as
    ``{"name": ..., **arguments}`` (e.g. ``transform={"name": "cnn", "N": 128, "M": 192}``,
    ``entropy={"name": "charm", "N": 128, "M": 192}``)."""
    (transform, transform_options), (entropy, entropy_options) = _spec(transform), _spec(entropy)
    return _codec(TRANSFORMS.build(transform, **transform_options), ENTROPY_MODELS.build(entropy, **entropy_options))
