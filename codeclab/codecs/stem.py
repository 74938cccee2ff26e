"""STEM as a video codec: one image codec for every frame, plus a spatiotemporal entropy model for
P-frames (Sun et al., arXiv 2104.06083; :mod:`codeclab.entropy_models.spatiotemporal`).

::

    I-frame:  x_t ──► g_a ──► y_t ──► image entropy model ─────────────────► y_hat_t ──► g_s ──► x_hat_t
    P-frame:  x_t ──► g_a ──► y_t ──► spatiotemporal model(y_t | y_hat_{t-1}) ─► y_hat_t ──► g_s ──► x_hat_t

The image codec (``g_a``, ``g_s``, ``entropy_model``) is a trained mbt2018-mean, frozen while the
spatiotemporal model (``temporal_model``) trains. A variable-rate image codec gives a variable-rate
video codec: P-frames use the image codec's own gains, so at one level I- and P-frames share a
quantisation step (equal distortion; the rate saving is the temporal model's alone).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..coding import EntropyCoder
from ..entropy_models.spatiotemporal import SpatiotemporalEntropyModel
from .base import Codec, register_codec
from .zoo import mbt2018_mean


class VideoCodec(Codec):
    """An image codec plus ``temporal_model`` for P-frames (see the module docstring)."""

    def __init__(self, image: Codec, temporal_model: SpatiotemporalEntropyModel):
        super().__init__(image.g_a, image.g_s, image.entropy_model, image.stride)
        self.temporal_model = temporal_model
        if image.rate_levels:
            # One quantisation step per level for I- and P-frames: the P-frame model uses the
            # image model's gains (the same module, so one set of parameters and one file entry each).
            temporal_model.gain_bank = image.entropy_model.gain_bank

    @torch.no_grad()
    def compress_y_p(self, y: Tensor, reference: Tensor, coder: EntropyCoder,
                     level: int | None = None) -> tuple[list[bytes], Tensor]:
        """Code a P-frame's latent ``y = g_a(x_t)`` given ``y_hat_{t-1}``; returns the streams and ``y_hat_t``."""
        self.ensure_tables()
        return self.temporal_model.compress(y, reference, coder, level)

    @torch.no_grad()
    def decompress_y_p(self, strings: list[bytes], reference: Tensor, coder: EntropyCoder,
                       level: int | None = None) -> Tensor:
        """``y_hat_t`` of a P-frame's streams, given ``y_hat_{t-1}`` (bit-exact copy of the encoder's)."""
        self.ensure_tables()
        return self.temporal_model.decompress(strings, reference, coder, level)


@register_codec("stem")
def stem(N: int = 128, M: int = 192, rate_levels: int = 0, lmbda_min: float = 0.0018, lmbda_max: float = 0.0483,
         scale_table_levels: int = 64, arithmetic: str = "float", spatial: str = "masked",
         residual_rate: str = "rounded", context_input: str = "rounded", residual_grid: str = "reference",
         temporal_arithmetic: str | None = None, mean_offsets: int = 16) -> VideoCodec:
    """STEM on an mbt2018-mean image codec of width ``N, M`` (its rate options and arithmetic
    are the image codec's). ``spatial``: ``"masked"`` (the paper), ``"checkerboard"`` or ``"none"``;
    ``residual_rate``, ``context_input``: what the training rate and the spatial prior see,
    ``"rounded"`` (the official code) or ``"noise"``; ``residual_grid``: ``"reference"`` (P-frames
    stay on their reference's quantisation grid, as the official code's) or ``"mean"`` (rounded
    around the predicted mean) (:mod:`codeclab.entropy_models.spatiotemporal`); ``mean_offsets``:
    on the reference grid, the sub-integer steps of the mean the P-frame tables resolve (0: the
    mean rounded to the grid, model files before the option);
    ``temporal_arithmetic``: the P-frame networks' arithmetic when it differs from the image
    codec's (``"int8"``: exact 8-bit networks, :class:`~codeclab.entropy_models.integer.Int8ConvMixin`)."""
    image = mbt2018_mean(N, M, rate_levels, lmbda_min, lmbda_max, scale_table_levels, arithmetic)
    rate = dict(rate_levels=rate_levels, lmbda_min=lmbda_min, lmbda_max=lmbda_max, scale_table_levels=scale_table_levels)
    return VideoCodec(image, SpatiotemporalEntropyModel(N, M, spatial, residual_rate, context_input, residual_grid,
                                                        mean_offsets,
                                                        arithmetic=temporal_arithmetic or arithmetic, **rate))
