"""First versions of transforms whose live builder has since moved to its paper's code, kept so
that the model files written with them keep decoding (the package docstring says when)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..transforms.base import TRANSFORMS, TransformPair
from ..transforms.layers import AttentionBlock, ResidualBlock, conv, deconv
from ..transforms.swin import ResidualSwinV2Stage, check_stages
from ..transforms.wavelet import WaLLoCAnalysis, WaLLoCSynthesis, WaveletPacket2d


class DenseFeatureEnhancement(nn.Module):
    """Dense block with local feature fusion and a skip, ``[B, C, H, W] -> [B, C, H, W]``.

    ``f_l = LeakyReLU(Conv3x3([x, f_1, ..., f_{l-1}]))`` (``growth`` channels each), then
    ``y = x + Conv1x1([x, f_1, ..., f_L])`` (the residual dense block of Zhang et al. 2018, used
    by S2LIC to enrich the features at the image end of the analysis and synthesis transforms).
    """

    def __init__(self, channels: int, growth: int = 32, layers: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels + i * growth, growth, 3, padding=1), nn.LeakyReLU(inplace=True))
            for i in range(layers)
        )
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return x + self.fuse(torch.cat(features, dim=1))


@TRANSFORMS.register("swinv2_v1")
def swin_v1_transforms(N: int, M: int, window: int = 8, depths: Sequence[int] = (1, 2, 3),
                       heads: Sequence[int] = (4, 8, 16), growth: int = 32) -> TransformPair:
    """CodecLab's first S2LIC transforms (model files before format 3; stride 16), 5x5 convolutions
    throughout, ``depths``/``heads`` listed from the image side toward the latent::

        g_a: conv/2 -> dense enhancement (growth) -> [SwinV2 stage -> conv/2] x 3
        g_s: [deconv*2 -> SwinV2 stage] x 3 (from the latent side) -> dense enhancement -> deconv*2
    """
    check_stages(depths, heads)
    g_a: list[nn.Module] = [conv(3, N), DenseFeatureEnhancement(N, growth)]
    for i, (depth, head) in enumerate(zip(depths, heads)):
        g_a += [ResidualSwinV2Stage(N, depth, head, window), conv(N, M if i == 2 else N)]
    g_s: list[nn.Module] = []
    for i, (depth, head) in enumerate(zip(reversed(depths), reversed(heads))):
        g_s += [deconv(M if i == 0 else N, N), ResidualSwinV2Stage(N, depth, head, window)]
    return TransformPair(nn.Sequential(*g_a), nn.Sequential(*g_s, DenseFeatureEnhancement(N, growth), deconv(N, 3)), 16)


class WaLLoCSynthesisV1(WaLLoCSynthesis):
    """CodecLab's first WaLLoC decoder (model files before format 4): a 1x1 projection to
    ``channels``, ``blocks`` residual blocks around an attention block, a 1x1 projection back to
    the packets."""

    def __init__(self, wpt: WaveletPacket2d, latent_channels: int, channels: int = 128, blocks: int = 4):
        nn.Module.__init__(self)  # only forward is shared: no AutoencoderKL decoder to build
        self.wpt, half = wpt, blocks // 2
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, channels, 1),
            *[ResidualBlock(channels, channels) for _ in range(half)],
            AttentionBlock(channels),
            *[ResidualBlock(channels, channels) for _ in range(blocks - half)],
            nn.Conv2d(channels, 3 * wpt.bands**2, 1),
        )


@TRANSFORMS.register("walloc_v1")
def walloc_v1_transforms(levels: int = 3, latent_channels: int = 12, wavelet: str = "bior4.4", encoder_hidden: int = 0,
                         decoder_channels: int = 128, decoder_blocks: int = 4) -> TransformPair:
    """WaLLoC's analysis with :class:`WaLLoCSynthesisV1`, stride ``2**levels``."""
    wpt = WaveletPacket2d(wavelet, levels)
    return TransformPair(WaLLoCAnalysis(wpt, latent_channels, encoder_hidden),
                         WaLLoCSynthesisV1(wpt, latent_channels, decoder_channels, decoder_blocks), 2**levels)
