"""S2LIC and its recombinations: any analysis/synthesis transform with any latent entropy model.

``S2LIC(N, M, transform, window, depths, heads, entropy)``:

* ``transform="swinv2"``: S2LIC's transforms (:mod:`codeclab.transforms.swin`): strided
  convolutions around residual SwinV2 stages, dense feature enhancement at the image end.
  ``transform="cnn"``: the Ballé/Minnen convolution + GDN stacks (:mod:`codeclab.transforms.cnn`).
* ``entropy``: a dict ``{"name": ..., **options}`` naming one of
  :data:`codeclab.entropy_models.context.ENTROPY_MODELS` (``hyperprior``, ``checkerboard``,
  ``charm``, ``acgc``) and its options (e.g. ``num_slices``, ``hidden``).

Shapes: ``x`` ``[B, 3, H, W]`` (H, W multiples of 64), ``y`` ``[B, M, H/16, W/16]``,
``z`` ``[B, N, H/64, W/64]``. Streams: ``[y, z]``.

Paper configuration (Wang et al., S2LIC): ``N=192, M=320``, window 8, stage depths 1/2/3 with
4/8/16 heads toward the latent, ACGC with 10 slices of 32 channels (``configs/codec/s2lic.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..entropy_models.context import build_entropy_model
from ..transforms import cnn, swin
from .base import Codec
from .registry import register_codec

TRANSFORMS = ("swinv2", "cnn")


def _plain(value):
    """Hydra/OmegaConf containers -> JSON-serialisable dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


@register_codec
class S2LIC(Codec):
    """S2LIC, or any transform/entropy-model pair (the constructor defaults are the paper's).

    ``config`` holds the constructor arguments as plain JSON, so a model file rebuilds the
    same codec through :func:`codeclab.codecs.build_codec`. Decoding reproduces the encoder's
    quantised latent exactly (see :mod:`codeclab.entropy_models.context.base`); the
    reconstruction then equals ``forward(x)["x_hat"]`` in eval mode up to float rounding.
    """

    codec_id = "s2lic"
    downsampling = 64
    num_streams = 2

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        transform: str = "swinv2",
        window: int = 8,
        depths: Sequence[int] = (1, 2, 3),
        heads: Sequence[int] = (4, 8, 16),
        growth: int = 32,
        entropy: Mapping | None = None,
    ):
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; available: {', '.join(TRANSFORMS)}")
        entropy = _plain(entropy or {"name": "acgc"})
        self.config = {
            "N": int(N), "M": int(M), "transform": transform, "window": int(window),
            "depths": [int(d) for d in depths], "heads": [int(h) for h in heads], "growth": int(growth),
            "entropy": entropy,
        }
        if transform == "swinv2":
            self.g_a = swin.swin_analysis(N, M, window, depths, heads, growth)
            self.g_s = swin.swin_synthesis(N, M, window, depths, heads, growth)
        else:
            self.g_a = cnn.analysis(N, M)
            self.g_s = cnn.synthesis(N, M)
        options = dict(entropy)
        self.entropy_model = build_entropy_model(N, M, options.pop("name"), **options)

    def forward(self, x):
        y_hat, likelihoods = self.entropy_model(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": likelihoods}

    def _compress(self, x):
        strings, _ = self.entropy_model.compress(self.g_a(x), self.coder)
        return strings

    def _decompress(self, strings, size):
        y_hat = self.entropy_model.decompress(strings, (size[0] // 16, size[1] // 16), self.coder)
        return self.g_s(y_hat)
