"""MLIC++'s transforms (Jiang & Wang, "MLIC++: Linear Complexity Multi-Reference Entropy Modeling
for Learned Image Compression", ICML 2023 Neural Compression Workshop), as the released code
defines them (JiangWeibeta/MLIC, ``MLIC++/modules/transform/analysis.py`` and ``synthesis.py``).

Residual blocks of Cheng et al. 2020 (:mod:`.layers`, with GELU where compressai has LeakyReLU),
``N = 192``, ``M = 320``:

* :func:`analysis`: ``[residual block, stride 2 -> residual block] x 3 -> conv3x3 stride 2``,
  ``[B, 3, H, W] -> [B, M, H/16, W/16]``.
* :func:`synthesis`: ``residual block (M) -> [residual block x2 up (sub-pixel, IGDN) -> residual
  block] x 3 -> sub-pixel conv3x3 x2``, the inverse shape map. The released ``SynthesisTransform``
  starts ``ResidualBlock(M, M), ResidualBlockUpsample(M, N)`` (its earlier version, kept there as
  ``SynthesisTransformOld``, started ``ResidualBlock(M, N)``); this is the one whose total
  parameter count is the paper's 83.5M.
* :func:`hyper_analysis`: five 3x3 convolutions (two of stride 2) with GELU, ``M -> N``, ``/4``.
* :func:`hyper_synthesis`: 3x3 convolutions and two sub-pixel x2 upsamplings with GELU,
  ``N -> M -> M -> 3M/2 -> 3M/2 -> 2M`` (scale and mean features).

Layer order and indices are the released ones; its modules wrap each stack in one attribute
(``g_a.analysis_transform``, ``g_s.synthesis_transform``, ``h_a.reduction``, ``h_s.increase``),
which :mod:`codeclab.codecs.mlicpp_interop` maps onto these plain ``nn.Sequential`` stacks.
"""

from __future__ import annotations

from torch import nn

from .base import TRANSFORMS, TransformPair
from .layers import ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3


def analysis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        ResidualBlockWithStride(3, N, 2, act=nn.GELU), ResidualBlock(N, N, act=nn.GELU),
        ResidualBlockWithStride(N, N, 2, act=nn.GELU), ResidualBlock(N, N, act=nn.GELU),
        ResidualBlockWithStride(N, N, 2, act=nn.GELU), ResidualBlock(N, N, act=nn.GELU),
        conv3x3(N, M, stride=2),
    )


def synthesis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        ResidualBlock(M, M, act=nn.GELU), ResidualBlockUpsample(M, N, 2, act=nn.GELU),
        ResidualBlock(N, N, act=nn.GELU), ResidualBlockUpsample(N, N, 2, act=nn.GELU),
        ResidualBlock(N, N, act=nn.GELU), ResidualBlockUpsample(N, N, 2, act=nn.GELU),
        ResidualBlock(N, N, act=nn.GELU), subpel_conv3x3(N, 3, 2),
    )


def hyper_analysis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(M, N), nn.GELU(), conv3x3(N, N), nn.GELU(), conv3x3(N, N, stride=2), nn.GELU(),
        conv3x3(N, N), nn.GELU(), conv3x3(N, N, stride=2),
    )


def hyper_synthesis(N: int, M: int) -> nn.Sequential:
    wide = M * 3 // 2
    return nn.Sequential(
        conv3x3(N, M), nn.GELU(), subpel_conv3x3(M, M, 2), nn.GELU(), conv3x3(M, wide), nn.GELU(),
        subpel_conv3x3(wide, wide, 2), nn.GELU(), conv3x3(wide, 2 * M),
    )


@TRANSFORMS.register("mlicpp")
def mlicpp_transforms(N: int, M: int) -> TransformPair:
    """:func:`analysis` and :func:`synthesis` (stride 16)."""
    return TransformPair(analysis(N, M), synthesis(N, M), 16)
