"""ELIC's transforms (He et al., CVPR 2022), as compressai's ``elic2022-official``: strided 5x5
convolutions between groups of three residual bottleneck blocks, with simplified attention
(Cheng et al. 2020) near the latent. ``g_a`` ``[B, 3, H, W] -> [B, M, H/16, W/16]``; ``g_s`` the
inverse (same layer order and names as compressai's).
"""

from __future__ import annotations

from torch import nn

from .base import TRANSFORMS, TransformPair
from .layers import AttentionBlock, ResidualBottleneckBlock, conv, deconv


def _blocks(N: int) -> list[nn.Module]:
    return [ResidualBottleneckBlock(N, N) for _ in range(3)]


@TRANSFORMS.register("elic")
def elic_transforms(N: int, M: int) -> TransformPair:
    g_a = nn.Sequential(
        conv(3, N), *_blocks(N), conv(N, N), *_blocks(N), AttentionBlock(N), conv(N, N), *_blocks(N), conv(N, M),
        AttentionBlock(M),
    )
    g_s = nn.Sequential(
        AttentionBlock(M), deconv(M, N), *_blocks(N), deconv(N, N), AttentionBlock(N), *_blocks(N), deconv(N, N),
        *_blocks(N), deconv(N, 3),
    )
    return TransformPair(g_a, g_s, 16)
