"""Cheng et al., "Learned Image Compression with Discretized Gaussian Mixture Likelihoods and
Attention Modules", CVPR 2020: residual-block transforms (``anchor``) and the same with
simplified attention blocks (``attention``), as compressai's ``Cheng2020Anchor`` and
``Cheng2020Attention`` (same layers, order and parameter names; ``M = N``).

Shapes: ``g_a`` ``[B, 3, H, W] -> [B, N, H/16, W/16]``; ``g_s`` the inverse; ``h_a``
``[B, N, h, w] -> [B, N, h/4, w/4]``; ``h_s`` back to ``[B, 2N, h, w]`` (scales, means).
"""

from __future__ import annotations

from torch import nn

from .base import TRANSFORMS, TransformPair
from .layers import AttentionBlock, ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3


def analysis(N: int, attention: bool) -> nn.Sequential:
    layers = [
        ResidualBlockWithStride(3, N), ResidualBlock(N, N), ResidualBlockWithStride(N, N),
        *([AttentionBlock(N)] if attention else []),
        ResidualBlock(N, N), ResidualBlockWithStride(N, N), ResidualBlock(N, N), conv3x3(N, N, stride=2),
        *([AttentionBlock(N)] if attention else []),
    ]
    return nn.Sequential(*layers)


def synthesis(N: int, attention: bool) -> nn.Sequential:
    layers = [
        *([AttentionBlock(N)] if attention else []),
        ResidualBlock(N, N), ResidualBlockUpsample(N, N), ResidualBlock(N, N), ResidualBlockUpsample(N, N),
        *([AttentionBlock(N)] if attention else []),
        ResidualBlock(N, N), ResidualBlockUpsample(N, N), ResidualBlock(N, N), subpel_conv3x3(N, 3, 2),
    ]
    return nn.Sequential(*layers)


def hyper_analysis(N: int) -> nn.Sequential:
    """3x3 convolutions, two of them strided, with leaky ReLUs."""
    return nn.Sequential(
        conv3x3(N, N), nn.LeakyReLU(inplace=True), conv3x3(N, N), nn.LeakyReLU(inplace=True),
        conv3x3(N, N, stride=2), nn.LeakyReLU(inplace=True), conv3x3(N, N), nn.LeakyReLU(inplace=True),
        conv3x3(N, N, stride=2),
    )


def hyper_synthesis(N: int) -> nn.Sequential:
    """3x3 and sub-pixel convolutions to ``2N`` channels (scales, means)."""
    return nn.Sequential(
        conv3x3(N, N), nn.LeakyReLU(inplace=True), subpel_conv3x3(N, N, 2), nn.LeakyReLU(inplace=True),
        conv3x3(N, N * 3 // 2), nn.LeakyReLU(inplace=True), subpel_conv3x3(N * 3 // 2, N * 3 // 2, 2),
        nn.LeakyReLU(inplace=True), conv3x3(N * 3 // 2, N * 2),
    )


@TRANSFORMS.register("cheng2020")
def cheng2020_transforms(N: int, attention: bool = False) -> TransformPair:
    """:func:`analysis` and :func:`synthesis` (stride 16); ``attention``: cheng2020-attn."""
    return TransformPair(analysis(N, attention), synthesis(N, attention), 16)
