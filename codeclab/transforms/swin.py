"""Swin blocks (V2 for S2LIC's transforms, V1 for SwinJSCC), residual SwinV2 stages, dense feature enhancement.

Shapes (``x``: ``[B, 3, H, W]``, H and W multiples of 16; any size inside the stages):
  * :class:`SwinV2Block`, :class:`SwinV1Block`: ``[B, H, W, C] -> [B, H, W, C]`` (tokens last).
  * :class:`ResidualSwinV2Stage`: ``[B, C, H, W] -> [B, C, H, W]``.
  * :func:`s2lic_analysis`: ``[B, 3, H, W] -> [B, M, H/16, W/16]``; :func:`s2lic_synthesis`: the inverse map.

References: Liu et al., "Swin Transformer V2: Scaling Up Capacity and Resolution", CVPR 2022
(scaled cosine attention, log-spaced continuous position bias, residual post-norm);
Liu et al., "Swin Transformer", ICCV 2021 (shifted windows); Wang et al., "S2LIC: Learned
Image Compression with the SwinV2 Block, Adaptive Channel-wise and Global-inter Attention
Context" (the transform layout: strided convolutions around residual SwinV2 stages, a
dense-block feature-enhancement module at the image end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import TRANSFORMS, TransformPair
from .layers import conv, deconv, subpel_conv3x3

_MASKED = -100.0  # additive attention bias that removes a key (exp(-100) underflows to ~0)


def _relative_coords_table(window: int, reference_window: int) -> torch.Tensor:
    """Log-spaced relative coordinates ``[(2w-1)^2, 2]`` (SwinV2 eq. 4).

    ``d -> sign(d) * log2(1 + |8 d / (w_ref - 1)|) / log2(8)``: offsets are normalised by the
    configured window so that a smaller effective window (small feature maps) reuses the same
    continuous bias function instead of extrapolating.
    """
    offsets = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1).reshape(-1, 2)
    table = table * 8 / max(reference_window - 1, 1)
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def _relative_position_index(window: int) -> torch.Tensor:
    """``[w^2, w^2]`` index into the relative coordinates table for every query/key pair."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def _attend(attn: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``softmax(attn + mask) v`` with the heads merged: ``[nW*B, heads, T, T]``, ``[nW*B, heads, T, d]``
    and a per-window additive mask ``[nW, T, T]`` (or None) -> ``[nW*B, T, heads*d]``."""
    batch, heads, tokens, _ = attn.shape
    if mask is not None:
        windows = mask.shape[0]
        attn = (attn.view(batch // windows, windows, heads, tokens, tokens) + mask[None, :, None]).view(batch, heads, tokens, tokens)
    return (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, -1)


class WindowAttentionV2(nn.Module):
    """Multi-head scaled cosine self-attention inside windows (SwinV2).

    ``attn(q, k) = cos(q, k) * exp(min(tau_h, ln 100)) + B_h(dq, dk)`` per head ``h``, with a
    learnable logit scale ``tau_h`` (initialised to ln 10) and a continuous relative position
    bias ``B = 16 * sigmoid(MLP(log-spaced (dy, dx)))`` from a 2-512-heads MLP.
    Input ``[nW * B, w*w, C]`` plus an additive mask ``[nW, w*w, w*w]`` (or None).
    One difference from the SwinV2 code: the q/k/v projection has a bias on k as well
    (SwinV2 keeps only the q and v biases).
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, heads, bias=False))

    def position_bias(self, window: int) -> torch.Tensor:
        """``[heads, w^2, w^2]`` bias for an effective window ``w <= self.window``."""
        table = self.cpb_mlp(_relative_coords_table(window, self.window).to(self.logit_scale))  # its device and dtype
        bias = table[_relative_position_index(window).to(table.device).reshape(-1)]
        bias = bias.reshape(window * window, window * window, -1).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, window: int, mask: torch.Tensor | None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.exp(torch.clamp(self.logit_scale, max=math.log(100.0)))
        attn = attn + self.position_bias(window)[None]
        return self.proj(_attend(attn, v, mask))


def _to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C] -> [B * nW, w*w, C]`` (H, W multiples of ``window``)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _from_windows(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def _window_mask(h: int, w: int, hp: int, wp: int, window: int, shift: int, device) -> torch.Tensor | None:
    """Additive mask ``[nW, w^2, w^2]`` removing keys from other shift regions and padding."""
    if not shift and (hp, wp) == (h, w):
        return None
    region = torch.zeros(hp, wp, device=device)
    if shift:
        bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        for i, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
            region[rows, cols] = i
    padding = torch.ones(hp, wp, dtype=torch.bool, device=device)
    padding[:h, :w] = False
    if shift:
        padding = torch.roll(padding, (-shift, -shift), dims=(0, 1))
    region = _to_windows(region[None, :, :, None], window).squeeze(-1)
    padding = _to_windows(padding[None, :, :, None].float(), window).squeeze(-1) > 0
    blocked = (region[:, :, None] != region[:, None, :]) | padding[:, None, :]
    return blocked.float() * _MASKED


def shifted_window_attention(x: torch.Tensor, attention: nn.Module, window: int, shift: bool) -> torch.Tensor:
    """``attention(windows, effective window, mask)`` over ``[B, H, W, C]`` tokens, any ``H, W``.

    With ``shift`` the windows are cyclically shifted by half a window (Swin's SW-MSA), with an
    attention mask so tokens only attend within their original region. Feature maps are
    zero-padded to a multiple of the window; padded tokens are masked out as keys, so the output
    at real positions does not depend on the padding. On maps no larger than the window the
    effective window shrinks to ``min(H, W)`` and shifting is disabled (as Swin does).
    """
    _, h, w, _ = x.shape
    window_now = min(window, h, w)
    offset = window_now // 2 if shift and min(h, w) > window else 0
    hp, wp = math.ceil(h / window_now) * window_now, math.ceil(w / window_now) * window_now
    tokens = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    if offset:
        tokens = torch.roll(tokens, (-offset, -offset), dims=(1, 2))
    mask = _window_mask(h, w, hp, wp, window_now, offset, x.device)
    out = _from_windows(attention(_to_windows(tokens, window_now), window_now, mask), window_now, hp, wp)
    if offset:
        out = torch.roll(out, (offset, offset), dims=(1, 2))
    return out[:, :h, :w]


class SwinV2Block(nn.Module):
    """One SwinV2 block on ``[B, H, W, C]`` tokens, any ``H, W``.

    ``x = x + LN(WindowAttention(x)); x = x + LN(MLP(x))`` (residual post-normalisation), the
    windows as :func:`shifted_window_attention` (the continuous position bias is defined for any
    effective window).
    """

    def __init__(self, dim: int, heads: int, window: int, shift: bool, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.window, self.shift, self.drop_path = window, shift, float(drop_path)
        self.attn = WindowAttentionV2(dim, heads, window)
        self.norm1 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._drop(self.norm1(shifted_window_attention(x, self.attn, self.window, self.shift)))
        return x + self._drop(self.norm2(self.mlp(x)))

    def _drop(self, branch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth (training only): the residual branch of a sample is dropped with
        probability ``drop_path`` and the kept ones are scaled by ``1 / (1 - drop_path)``."""
        if not self.training or self.drop_path == 0:
            return branch
        keep = torch.rand(branch.shape[0], 1, 1, 1, device=branch.device) >= self.drop_path
        return branch * keep / (1 - self.drop_path)

    def init_weights(self) -> None:
        """SwinV2's initialisation: truncated-normal (std 0.02) linear weights, zero biases, and
        zero-initialised post-norms, so that every block starts as the identity."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for norm in (self.norm1, self.norm2):
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)


class WindowAttentionV1(nn.Module):
    """Multi-head self-attention inside windows (Swin V1): ``softmax(q k^T / sqrt(d) + B_h) v``
    with a learned relative position bias table ``[(2w-1)^2, heads]`` (truncated normal, std
    0.02). Swin builds a smaller table when a feature map is smaller than the window; here an
    effective window ``w' < w`` uses the centre of the configured table (the same offsets), so
    one model runs at any size. Input ``[nW * B, w'*w', C]`` plus an additive mask (or None).
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.window, self.scale = heads, window, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, window: int) -> torch.Tensor:
        """``[heads, w^2, w^2]`` bias for an effective window ``w <= self.window``."""
        side, start = 2 * self.window - 1, self.window - window
        table = self.relative_position_bias_table.view(side, side, self.heads)
        table = table[start : start + 2 * window - 1, start : start + 2 * window - 1].reshape(-1, self.heads)
        bias = table[_relative_position_index(window).to(table.device).reshape(-1)]
        return bias.reshape(window * window, window * window, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, window: int, mask: torch.Tensor | None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.position_bias(window)[None]
        return self.proj(_attend(attn, v, mask))


class SwinV1Block(nn.Module):
    """One Swin (V1) block on ``[B, H, W, C]`` tokens, any ``H, W``: ``x = x + WMSA(LN(x));
    x = x + MLP(LN(x))`` (pre-normalisation; MLP ``C -> 4C -> C`` with GELU), the windows as
    :func:`shifted_window_attention`."""

    def __init__(self, dim: int, heads: int, window: int, shift: bool, mlp_ratio: float = 4.0):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttentionV1(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + shifted_window_attention(self.norm1(x), self.attn, self.window, self.shift)
        return x + self.mlp(self.norm2(x))


class ResidualSwinV2Stage(nn.Module):
    """``depth`` SwinV2 blocks (alternating plain/shifted windows), a 3x3 conv, and a skip:
    ``y = x + Conv(Blocks(x))`` on ``[B, C, H, W]`` (the RSTB layout of SwinIR, with V2 blocks)."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, drop_path: Sequence[float] = ()):
        super().__init__()
        rates = list(drop_path) or [0.0] * depth
        self.blocks = nn.Sequential(*[SwinV2Block(dim, heads, window, shift=bool(i % 2), drop_path=rates[i])
                                      for i in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.blocks(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class DenseBlock(nn.Module):
    """Five 3x3 convolutions with dense connections (growth 32, leaky ReLU 0.2), the last one
    mapping to ``out_channels``; the first four start Xavier-normal x 0.1, the last at zero
    (InvCompress's ``DenseBlock``, which S2LIC's enhancement module is built from)."""

    def __init__(self, in_channels: int, out_channels: int, growth: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels + i * growth, growth if i < 4 else out_channels, 3, padding=1)
                                   for i in range(5))
        for i, layer in enumerate(self.convs):
            if i < 4:
                nn.init.xavier_normal_(layer.weight)
                layer.weight.data.mul_(0.1)
            else:
                nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.convs[:-1]:
            features.append(F.leaky_relu(layer(torch.cat(features, dim=1)), 0.2))
        return self.convs[-1](torch.cat(features, dim=1))


class EnhancementBlock(nn.Module):
    """``x + 0.2 f(x)`` on the RGB image, ``f`` = DenseBlock(3, nf) -> 1x1 -> 3x3 -> 1x1 ->
    DenseBlock(nf, 3) (S2LIC's ``EnhModule(64)``: one block before the analysis, another, the
    "reverse" one, after the synthesis)."""

    RESIDUAL_SCALE = 0.2

    def __init__(self, channels: int = 64):
        super().__init__()
        self.layers = nn.Sequential(
            DenseBlock(3, channels), nn.Conv2d(channels, channels, 1), nn.Conv2d(channels, channels, 3, padding=1),
            nn.Conv2d(channels, channels, 1), DenseBlock(channels, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) * self.RESIDUAL_SCALE


def check_stages(depths: Sequence[int], heads: Sequence[int]) -> None:
    """Three stages: S2LIC's transforms have three SwinV2 stages on each side."""
    if len(depths) != 3 or len(heads) != 3:
        raise ValueError(f"need 3 stage depths and 3 head counts, got {list(depths)} and {list(heads)}")


def drop_path_rates(depths: Sequence[int], rate: float) -> tuple[list[list[float]], list[list[float]]]:
    """Per-stage stochastic-depth rates ``(analysis, synthesis)`` as the released file computes
    them: its depth list is ``[*depths, 1, 1]`` (``[1, 2, 3, 1, 1]``), the rates rise linearly from 0
    to ``rate`` over its sum, the analysis stages take slices 0-2 of it and the synthesis stages
    slices 2-4 of the reversed list (so the two share some rates)."""
    listed = [*depths, 1, 1]
    count = sum(listed)
    dpr = [rate * i / (count - 1) for i in range(count)]  # linspace, in Python (also under a meta device)

    def stage(depth_list, i):
        return dpr[sum(depth_list[:i]):sum(depth_list[:i + 1])]

    reverse = listed[::-1]
    return [stage(listed, i) for i in range(3)], [stage(reverse, i) for i in range(2, 5)]


def s2lic_analysis(N: int, M: int, window: int, depths: Sequence[int], heads: Sequence[int], drop_path: float = 0.1,
                   enhancement: int = 64) -> nn.Sequential:
    """``g_a`` of the released ``code/s2lic.py``: enhancement on RGB -> conv 5x5/2 -> stage ->
    [conv 3x3/2 -> stage] x 2 -> conv 3x3/2 to ``M``."""
    check_stages(depths, heads)
    rates = drop_path_rates(depths, drop_path)[0]
    layers: list[nn.Module] = [EnhancementBlock(enhancement), conv(3, N, 5)]
    for i, (depth, head) in enumerate(zip(depths, heads)):
        layers += [ResidualSwinV2Stage(N, depth, head, window, rates[i]), conv(N, M if i == 2 else N, 3)]
    return nn.Sequential(*layers)


def s2lic_synthesis(N: int, M: int, window: int, depths: Sequence[int], heads: Sequence[int], drop_path: float = 0.1,
                    enhancement: int = 64) -> nn.Sequential:
    """``g_s`` of the released file: [deconv 3x3/2 -> stage] x 3 (stages from the latent side) ->
    sub-pixel 3x3 convolution x2 to RGB -> the reverse enhancement block."""
    check_stages(depths, heads)
    rates = drop_path_rates(depths, drop_path)[1]
    layers: list[nn.Module] = []
    for i, (depth, head) in enumerate(zip(reversed(depths), reversed(heads))):
        layers += [deconv(M if i == 0 else N, N, 3), ResidualSwinV2Stage(N, depth, head, window, rates[i])]
    layers += [subpel_conv3x3(N, 3, 2), EnhancementBlock(enhancement)]
    return nn.Sequential(*layers)


@TRANSFORMS.register("swinv2")
def swin_transforms(N: int, M: int, window: int = 8, depths: Sequence[int] = (1, 2, 3), heads: Sequence[int] = (4, 8, 16),
                    drop_path: float = 0.1) -> TransformPair:
    """S2LIC's transforms (stride 16) as the released ``code/s2lic.py`` (:func:`s2lic_analysis`,
    :func:`s2lic_synthesis`; SwinV2 initialisation, drop-path ``drop_path``). CodecLab's first
    version, which model files before format 3 use, is :func:`codeclab.compat.transforms.swin_v1_transforms`."""
    pair = TransformPair(s2lic_analysis(N, M, window, depths, heads, drop_path),
                         s2lic_synthesis(N, M, window, depths, heads, drop_path), 16)
    for module in (*pair.g_a.modules(), *pair.g_s.modules()):
        if isinstance(module, SwinV2Block):
            module.init_weights()
    return pair
