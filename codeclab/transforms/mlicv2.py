"""MLICv2's transforms, a RECONSTRUCTION from the paper (Jiang et al., "MLICv2: Enhanced
Multi-Reference Entropy Modeling for Learned Image Compression", arXiv:2504.19119, 2025; no code is
released): MLIC++'s transforms (:mod:`.mlicpp`) with the non-resampling residual blocks replaced by
MetaFormer-style token-mixing blocks (``token_mixing=True``); ``token_mixing=False`` builds MLIC++'s
transforms unchanged (same modules, same parameter names).

:class:`TokenMixingBlock` (``[B, C, H, W]`` -> same), a MetaFormer block (Yu et al., CVPR 2022) with
a convolutional token mixer::

    x = x + mixer(norm1(x))      mixer: 1x1, GELU, depth-wise 5x5, 1x1
    x = x + mlp(norm2(x))        mlp:   1x1 (C -> 2C), GELU, 1x1 (2C -> C)

``norm``: LayerNorm over the channels at each position. Which blocks are replaced, the mixer, the
kernel, the MLP ratio and ``depth`` (blocks per replaced residual block, 2) are this
reconstruction's choices (the paper describes a "simple token mixing" block, not these numbers):
``g_a``'s three ``ResidualBlock(N, N)`` and ``g_s``'s ``ResidualBlock(M, M)`` and three
``ResidualBlock(N, N)`` each become ``depth`` blocks; the strided and upsampling blocks, the final
convolutions and the hyper networks stay MLIC++'s.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from . import mlicpp
from .base import TRANSFORMS, TransformPair

ANALYSIS_BLOCKS = (1, 3, 5)  # g_a's ResidualBlock(N, N)
SYNTHESIS_BLOCKS = (0, 2, 4, 6)  # g_s's ResidualBlock(M, M) and ResidualBlock(N, N)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``[B, C, H, W]`` at each position."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class TokenMixingBlock(nn.Module):
    """MetaFormer block with a separable-convolution token mixer (see the module docstring)."""

    def __init__(self, channels: int, kernel: int = 5, mlp_ratio: int = 2):
        super().__init__()
        self.norm1, self.norm2 = ChannelLayerNorm(channels), ChannelLayerNorm(channels)
        self.mixer = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.GELU(),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels), nn.Conv2d(channels, channels, 1),
        )
        hidden = channels * mlp_ratio
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _replace(stack: nn.Sequential, indices, depth: int) -> nn.Sequential:
    for i in indices:
        channels = stack[i].conv1.in_channels
        stack[i] = nn.Sequential(*(TokenMixingBlock(channels) for _ in range(depth)))
    return stack


def analysis(N: int, M: int, token_mixing: bool = True, depth: int = 2) -> nn.Sequential:
    stack = mlicpp.analysis(N, M)
    return _replace(stack, ANALYSIS_BLOCKS, depth) if token_mixing else stack


def synthesis(N: int, M: int, token_mixing: bool = True, depth: int = 2) -> nn.Sequential:
    stack = mlicpp.synthesis(N, M)
    return _replace(stack, SYNTHESIS_BLOCKS, depth) if token_mixing else stack


@TRANSFORMS.register("mlicv2")
def mlicv2_transforms(N: int, M: int, token_mixing: bool = True, token_mixing_depth: int = 2) -> TransformPair:
    """:func:`analysis` and :func:`synthesis` (stride 16); ``token_mixing=False``: MLIC++'s."""
    return TransformPair(analysis(N, M, token_mixing, token_mixing_depth),
                         synthesis(N, M, token_mixing, token_mixing_depth), 16)
