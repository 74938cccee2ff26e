"""McQuic's transforms and blocks (Zhu et al., "Unified Multivariate Gaussian Mixture for Efficient
Neural Image Compression", CVPR 2022; official code xiaosu-zhu/McQuic, ``mcquic/nn/blocks.py``
and ``mcquic/modules/compressor.py``).

The blocks are McQuic's, not compressai's: pre-activation residual blocks with SiLU (taming's
residual blocks without GroupNorm), GDN inside the strided block, IGDN inside the sub-pixel
upsampling block, and an attention block whose two branches are three residual blocks each
(Cheng et al.'s simplified attention with full residual blocks instead of bottleneck units)::

    ResidualBlock(x)        = x + conv3(SiLU(conv3(SiLU(x))))
    ResidualBlockWithStride = conv3/2(x) + conv3(GDN(conv3/2(SiLU(x))))
    ResidualBlockShuffle    = ps3(x) + conv3(IGDN(ps3(SiLU(x))))       ps3: conv3 to 4C + PixelShuffle(2)
    AttentionBlock(x)       = x + RB(RB(RB(x))) * sigmoid(conv1(RB(RB(RB(x)))))

Analysis (``/8``, width ``C``; the paper's 128)::

    conv3/2 -> RB -> RB/2 -> Attn -> RB -> RB/2 -> RB

Synthesis (mirror, sub-pixel upsampling)::

    RB -> RBShuffle -> Attn -> RB -> RBShuffle -> RB -> ps3(C -> 3)

Everything coarser than ``/8`` (the per-level stage encoders, heads and the cascaded decoder)
belongs to the quantiser, :mod:`codeclab.entropy_models.mcquic`, as in the official code.

Deviations: the blocks follow the stored version of ``mcquic/nn/blocks.py`` (SiLU, GDN); they were
not compared block by block with the paper's release, commit 3dc1a82 (which is in the repository;
issue 29 audited its quantiser, EMA and optimiser, :mod:`codeclab.entropy_models.mcquic`). The image is fed in ``[0, 1]``
(the official code normalises to ``[-1, 1]``; a per-channel affine change the first
convolution absorbs).
"""

from __future__ import annotations

from torch import Tensor, nn

from .base import TRANSFORMS, TransformPair
from .layers import GDN, conv1x1, conv3x3


def pixel_shuffle3x3(in_channels: int, out_channels: int, r: int = 2) -> nn.Sequential:
    """``conv3x3`` to ``out * r^2`` channels, then ``PixelShuffle(r)`` (McQuic's ``pixelShuffle3x3``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels * r * r, 3, padding=1), nn.PixelShuffle(r))


class _Residual(nn.Module):
    """``branch(x) + skip(x)`` (``skip`` None: identity)."""

    def __init__(self, branch: nn.Sequential, skip: nn.Module | None):
        super().__init__()
        self.branch, self.skip = branch, skip

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x) + (x if self.skip is None else self.skip(x))


class ResidualBlock(_Residual):
    """``x + conv3(SiLU(conv3(SiLU(x))))`` (a 1x1 skip if the widths differ)."""

    def __init__(self, in_channels: int, out_channels: int):
        skip = conv1x1(in_channels, out_channels) if in_channels != out_channels else None
        super().__init__(nn.Sequential(nn.SiLU(), conv3x3(in_channels, out_channels), nn.SiLU(),
                                       conv3x3(out_channels, out_channels)), skip)


class ResidualBlockWithStride(_Residual):
    """``conv3/2(x) + conv3(GDN(conv3/2(SiLU(x))))``: halves H and W."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__(nn.Sequential(nn.SiLU(), conv3x3(in_channels, out_channels, stride), GDN(out_channels),
                                       conv3x3(out_channels, out_channels)), conv3x3(in_channels, out_channels, stride))


class ResidualBlockShuffle(_Residual):
    """``ps3(x) + conv3(IGDN(ps3(SiLU(x))))``: doubles H and W by sub-pixel convolution."""

    def __init__(self, in_channels: int, out_channels: int, r: int = 2):
        super().__init__(nn.Sequential(nn.SiLU(), pixel_shuffle3x3(in_channels, out_channels, r),
                                       GDN(out_channels, inverse=True), conv3x3(out_channels, out_channels)),
                         pixel_shuffle3x3(in_channels, out_channels, r))


class AttentionBlock(nn.Module):
    """``x + main(x) * sigmoid(side(x))``, ``main`` three residual blocks, ``side`` three residual
    blocks and a 1x1 convolution (McQuic's form of Cheng et al.'s simplified attention)."""

    def __init__(self, channels: int):
        super().__init__()
        self.main = nn.Sequential(*(ResidualBlock(channels, channels) for _ in range(3)))
        self.side = nn.Sequential(*(ResidualBlock(channels, channels) for _ in range(3)), conv1x1(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.main(x) * self.side(x).sigmoid()


def mcquic_analysis(channels: int) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(3, channels, 2), ResidualBlock(channels, channels), ResidualBlockWithStride(channels, channels),
        AttentionBlock(channels), ResidualBlock(channels, channels), ResidualBlockWithStride(channels, channels),
        ResidualBlock(channels, channels),
    )


def mcquic_synthesis(channels: int) -> nn.Sequential:
    return nn.Sequential(
        ResidualBlock(channels, channels), ResidualBlockShuffle(channels, channels), AttentionBlock(channels),
        ResidualBlock(channels, channels), ResidualBlockShuffle(channels, channels), ResidualBlock(channels, channels),
        pixel_shuffle3x3(channels, 3, 2),
    )


@TRANSFORMS.register("mcquic")
def mcquic_transforms(channels: int = 128) -> TransformPair:
    """McQuic's ``/8`` analysis and synthesis of width ``channels`` (the paper: 128)."""
    return TransformPair(mcquic_analysis(channels), mcquic_synthesis(channels), 8)
