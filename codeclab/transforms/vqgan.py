"""VQGAN encoder and decoder in the taming-transformers layout (the PatchGAN discriminator is in
:mod:`codeclab.training.losses`).

Esser, Rombach, Ommer, "Taming Transformers for High-Resolution Image Synthesis" (CVPR 2021).
Module and parameter names follow ``taming/modules/diffusionmodules/model.py`` and
``taming/modules/discriminator/model.py`` exactly (``conv_in``, ``down.{i}.block.{j}.norm1``,
``mid.attn_1.q``, ``up.{i}.upsample.conv``, ``main.{k}`` ...), so the ``encoder.*``,
``decoder.*`` and ``loss.discriminator.*`` tensors of a taming checkpoint load by prefix
(see :func:`codeclab.codecs.vqgan.load_taming_state_dict`).

Shapes, with ``L = len(ch_mult)`` and ``f = 2 ** (L - 1)`` (``f = 16`` for five levels):

* :class:`Encoder`: ``[B, in_channels, H, W] -> [B, z_channels, H/f, W/f]``
* :class:`Decoder`: ``[B, z_channels, H/f, W/f] -> [B, out_ch, H, W]``

Images are in [-1, 1] as in taming; the codec converts from and to [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import TRANSFORMS, TransformPair


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # taming: GroupNorm(32, C, eps=1e-6, affine=True); ``groups`` is lowered only for tiny test models.
    return nn.GroupNorm(num_groups=min(groups, channels), num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """``x + conv2(swish(norm2(conv1(swish(norm1(x))))))``; a 1x1 ``nin_shortcut`` when channels change."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all ``H*W`` positions: ``x + proj_out(softmax(q^T k / sqrt(C)) v)``."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        hn = self.norm(x)
        q, k, v = (layer(hn).reshape(b, c, h * w).transpose(1, 2) for layer in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after a (0, 1, 0, 1) zero pad (taming's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (AttnBlocks) and a resampler."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, dropout)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups, dropout)

    def forward(self, h):
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    """taming's ``Encoder`` (without the diffusion time embedding, as in VQGAN).

    Args:
      ch: base width; level ``i`` has ``ch * ch_mult[i]`` channels.
      ch_mult: width multipliers; ``len(ch_mult) - 1`` stride-2 downsamplings.
      num_res_blocks: ResnetBlocks per level.
      attn_resolutions: feature-map sides (for a ``resolution`` input) that get attention.
      resolution: the training image side; only decides where attention sits.
      z_channels: output channels (``double_z=False`` as in VQGAN).
      norm_groups: GroupNorm groups (32 in taming).
    """

    def __init__(self, *, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,), dropout=0.0,
                 in_channels=3, resolution=256, z_channels=256, norm_groups=32):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_ch_mult = (1,) + tuple(ch_mult)
        curr_res = resolution
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            level = _Level()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out, norm_groups, dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, norm_groups))
            if i_level != self.num_resolutions - 1:
                level.downsample = Downsample(block_in)
                curr_res //= 2
            self.down.append(level)
        self.mid = _Mid(block_in, norm_groups, dropout)
        self.norm_out = _norm(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for i_level, level in enumerate(self.down):
            for i_block, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """taming's ``Decoder``: ``num_res_blocks + 1`` ResnetBlocks per level, upsampling by 2 per level.

    Same arguments as :class:`Encoder`; ``out_ch`` output channels. Levels are stored in
    ``up[i]`` with ``i`` the resolution index (``up[0]`` is full resolution), as in taming.
    """

    def __init__(self, *, ch=128, out_ch=3, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                 dropout=0.0, resolution=256, z_channels=256, norm_groups=32):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, norm_groups, dropout)
        levels = []
        for i_level in reversed(range(self.num_resolutions)):
            level = _Level()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out, norm_groups, dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, norm_groups))
            if i_level != 0:
                level.upsample = Upsample(block_in)
                curr_res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight VQGAN's adaptive GAN weight is computed on."""
        return self.conv_out.weight


class VQGANAnalysis(nn.Module):
    """``quant_conv(encoder(2x - 1))``: ``[B, 3, H, W]`` in [0, 1] -> ``z`` ``[B, D, H/f, W/f]``."""

    def __init__(self, encoder: Encoder, z_channels: int, embed_dim: int):
        super().__init__()
        self.encoder = encoder
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)

    def forward(self, x):
        return self.quant_conv(self.encoder(2 * x - 1))


class VQGANSynthesis(nn.Module):
    """``(decoder(post_quant_conv(z_q)) + 1) / 2``: codewords -> image in [0, 1] (not clamped)."""

    def __init__(self, decoder: Decoder, z_channels: int, embed_dim: int):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.decoder = decoder

    def forward(self, z_q):
        return (self.decoder(self.post_quant_conv(z_q)) + 1) / 2


@TRANSFORMS.register("vqgan")
def vqgan_transforms(ch: int = 128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks: int = 2, attn_resolutions=(16,),
                     resolution: int = 256, z_channels: int = 256, embed_dim: int = 256, dropout: float = 0.0,
                     norm_groups: int = 32) -> TransformPair:
    """taming's ``VQModel`` encoder/decoder around the quantiser (stride ``2**(len(ch_mult) - 1)``)."""
    if not ch_mult:
        raise ValueError("ch_mult needs at least one level")
    ddconfig = dict(ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions),
                    dropout=dropout, resolution=resolution, z_channels=z_channels, norm_groups=norm_groups)
    return TransformPair(
        VQGANAnalysis(Encoder(in_channels=3, **ddconfig), z_channels, embed_dim),
        VQGANSynthesis(Decoder(out_ch=3, **ddconfig), z_channels, embed_dim),
        2 ** (len(ch_mult) - 1),
    )
