"""The decoder of diffusers' ``AutoencoderKL`` (Stable Diffusion's VAE), as WaLLoC's official code
instantiates it: ``Decoder(in, out, up_block_types=("UpDecoderBlock2D",) * n, block_out_channels,
layers_per_block=2, norm_num_groups=32, act_fn="silu", mid_block_add_attention=True)``.

::

    conv_in 3x3 -> mid block: resnet, attention (one head over all positions), resnet
                -> up blocks: layers_per_block + 1 resnets each, x2 nearest upsampling + conv 3x3
                   after every block but the last
                -> GroupNorm -> SiLU -> conv_out 3x3

Each resnet is ``x + conv(SiLU(GN(conv(SiLU(GN(x))))))`` (a 1x1 shortcut when the width changes);
GroupNorm eps 1e-6. Module and parameter names are diffusers', so its state_dicts load; the
numbers are diffusers' to float rounding (``tests/transforms/test_kl_decoder.py`` compares them
when diffusers is installed). Written here so that the coding path does not import diffusers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


class ResnetBlock(nn.Module):
    """diffusers' ``ResnetBlock2D`` without a time embedding."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=EPS)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class SpatialSelfAttention(nn.Module):
    """diffusers' ``Attention`` of the VAE's mid block: GroupNorm, one head of all ``C`` channels over
    the ``H W`` positions, output projection, residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=EPS)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        attended = F.scaled_dot_product_attention(
            self.to_q(tokens)[:, None], self.to_k(tokens)[:, None], self.to_v(tokens)[:, None])[:, 0]
        out = self.to_out[1](self.to_out[0](attended))
        return x + out.transpose(1, 2).reshape(batch, channels, height, width)


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups)])

    def forward(self, x: Tensor) -> Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Upsample(nn.Module):
    """x2 nearest-neighbour upsampling and a 3x3 convolution (diffusers' ``Upsample2D``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpDecoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if upsample else None

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return x if self.upsamplers is None else self.upsamplers[0](x)


class AutoencoderKLDecoder(nn.Module):
    """``[B, in_channels, h, w] -> [B, out_channels, h * 2**(n-1), w * 2**(n-1)]`` for
    ``n = len(block_out_channels)`` (one block, as WaLLoC: no upsampling)."""

    def __init__(self, in_channels: int, out_channels: int, block_out_channels: Sequence[int] = (768,),
                 layers_per_block: int = 2, norm_num_groups: int = 32):
        super().__init__()
        widths = list(reversed(block_out_channels))
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.mid_block = MidBlock(widths[0], norm_num_groups)
        self.up_blocks = nn.ModuleList(
            UpDecoderBlock(widths[max(i - 1, 0)], width, layers_per_block + 1, norm_num_groups, i < len(widths) - 1)
            for i, width in enumerate(widths))
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.mid_block(self.conv_in(x))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))
