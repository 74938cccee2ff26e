"""``pc-lossless``: lossless image coding with probabilistic circuits (Liu, Mandt & Van den Broeck,
ICLR 2022): the latent is the image's own 8-bit values, coded exactly by Hidden Chow-Liu Trees
over blocks of pixels (:mod:`codeclab.entropy_models.hclt`)::

    x ──×255──► y (the pixel values) ──HCLT per block──► stream ──► y_hat == y ──÷255──► x_hat == x

Everything else (model files, the container, ``codeclab encode/decode``, ``eval.py``) is the
framework's: decoding a file returns the input image byte for byte.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..entropy_models.hclt import PIXEL_VALUES, PatchCircuitEntropyModel
from .base import Codec, register_codec


class PixelValues(nn.Module):
    """``[0, 1]`` images -> their integer pixel values (what the circuit codes)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x * (PIXEL_VALUES - 1)).round()


class PixelScale(nn.Module):
    """Pixel values -> ``[0, 1]`` (exact inverse of :class:`PixelValues` once rounded to 8 bits)."""

    def forward(self, y: Tensor) -> Tensor:
        return y / (PIXEL_VALUES - 1)


@register_codec("pc-lossless")
def pc_lossless(patch: int = 8, channels: int = 3, hidden: int = 32, transform: str = "none", seed: int = 0) -> Codec:
    """Blocks of ``patch`` x ``patch`` pixels, one HCLT with ``hidden`` states per hidden variable
    over the three colour planes together (``channels = 3``) or over each plane (``channels = 1``),
    modelling the pixels (``transform = "none"``) or their median-predictor residuals (``"med"``,
    see :class:`~codeclab.entropy_models.hclt.PatchCircuitEntropyModel`). ``seed``: the
    parameters' random initialisation (ProbabilisticCircuits.jl's perturbation 0.4)."""
    return Codec(PixelValues(), PixelScale(), PatchCircuitEntropyModel(patch, channels, hidden, transform, seed), stride=1)
