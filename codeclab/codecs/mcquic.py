"""McQuic (Zhu et al., "Unified Multivariate Gaussian Mixture for Efficient Neural Image
Compression", CVPR 2022; official code xiaosu-zhu/McQuic, ``mcquic/modules/compressor.py``).

Pipeline (``L = len(k)`` levels, defaults ``C = 128``, ``m = 2``, ``K = 8192, 2048, 512``)::

    x [1, 3, H, W] in [0, 1] -> g_a (/8) -> y [1, C, H/8, W/8]
      level 0: stage /2 -> indices i_0 [m, H/16, W/16]  -- residual -->
      level 1: stage /2 -> indices i_1 [m, H/32, W/32]  -- residual -->
      level 2: stage /2 -> indices i_2 [m, H/64, W/64]            (the only things transmitted)
    restore: i_2 -> r_2 (/32) ; i_1 + side(r_2) -> r_1 (/16) ; i_0 + side(r_1) -> y_hat (/8)
    y_hat -> g_s (x8, sub-pixel) -> x_hat

The transforms are :mod:`codeclab.transforms.mcquic`; the quantiser, its static per-codebook
frequency tables and the coding order are :mod:`codeclab.entropy_models.mcquic`. Streams: one
per level, each symbol coded with its codebook's table; inputs are padded to multiples of
``8 * 2^L`` (64 by default).

Rate: fixed by the configuration, ``sum_l m log2(K_l) / (8 * 2^(l+1))^2`` bpp with uniform
tables (:func:`fixed_rate_bpp`; 0.1275 at the defaults, the paper's 0.1277); the learned static
tables code below it when the code usage is skewed. Training is distortion only
(:mod:`codeclab.training.mcquic`).

Exact vs approximate: the indices round-trip exactly on any machine (integer tables); the
reconstruction is a float function of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from ..entropy_models.mcquic import McQuicEntropyModel
from ..transforms.mcquic import mcquic_transforms
from .base import Codec, register_codec


def fixed_rate_bpp(m: int, k: Sequence[int], stride: int = 8) -> float:
    """``sum_l m log2(K_l) / (stride 2^(l+1))^2``: bits per pixel of the indices under uniform tables."""
    return sum(m * math.log2(ki) / (stride * 2 ** (i + 1)) ** 2 for i, ki in enumerate(k))


class McQuic(Codec):
    """The McQuic codec: :class:`~.base.Codec` plus shortcuts to the quantiser."""

    @property
    def quantizer(self) -> McQuicEntropyModel:
        return self.entropy_model

    @property
    def fixed_rate(self) -> float:
        """Bits per pixel of the indices under uniform tables (the configured operating point)."""
        return fixed_rate_bpp(self.quantizer.m, self.quantizer.k, self.stride)

    def indices(self, x: Tensor) -> list[Tensor]:
        """Indices ``[B, m, h_l, w_l]`` of every level of ``x`` ``[B, 3, H, W]`` in [0, 1]."""
        return self.quantizer.encode_indices(self.g_a(x))

    def decode_indices(self, codes: list[Tensor]) -> Tensor:
        """The reconstruction (not clamped) of the indices of every level."""
        return self.g_s(self.quantizer.decode_indices(codes))


@register_codec("mcquic")
def mcquic(channels: int = 128, m: int = 2, k: Sequence[int] = (8192, 2048, 512), ema: float = 0.9,
           ema_rule: str = "normalized", reassign_rule: str = "release") -> McQuic:
    """McQuic image codec: ``channels`` (128 in the paper, 192 the wider variant), ``m`` codebooks
    per level, ``k`` the codebook sizes from the finest level (``/16``) to the coarsest; any
    ``len(k)`` gives that many levels. ``ema``: the code-frequency EMA factor; ``ema_rule``,
    ``reassign_rule``: the official rules or CodecLab's first ones
    (:class:`~codeclab.entropy_models.mcquic.McQuicEntropyModel`)."""
    pair = mcquic_transforms(channels)
    return McQuic(pair.g_a, pair.g_s, McQuicEntropyModel(channels, m, k, ema, ema_rule, reassign_rule), pair.stride)
