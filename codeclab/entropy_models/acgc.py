"""ACGC: the adaptive channel-wise and global-inter attention context of S2LIC (Wang et al.,
"S2LIC: Learned Image Compression with the SwinV2 Block, Adaptive Channel-wise and
Global-inter Attention Context").

The wiring of the released ``code/s2lic.py``
(wyq2021/S2LIC), with its parameter names. ``y`` ``[B, M, h, w]`` is split into ``S`` slices
(10 x 32 channels); slice ``i`` (``s`` channels) is coded as a checkerboard, anchors at
``(i + j)`` odd, from ``F_i = [ACCTX_i(y_hat_<i) (2s), AGCTX_i(y_hat_<i) (s), h_s(z_hat) (2M)]``
(``h_s(z_hat)`` alone for the first slice)::

    anchors:      (sigma, mu) = entropy_parameters_anchor_i(F_i)        decode anchors
                  y_hat_a += lrp_anchor_i([mu_hyper, y_hat_<i, y_hat_a])       (at anchors)
    non-anchors:  (sigma, mu) = entropy_parameters_nonanchor_i(F_i)     decode non-anchors
                  y_hat_i += lrp_nonanchor_i([mu_hyper, y_hat_<i, y_hat_i])    (at non-anchors)

Both anchors and non-anchors see the same inputs (the released code gives non-anchors no spatial
context of the decoded anchors), through separate networks; the attention contexts have
``s i / 32`` heads (``i`` at S2LIC's sizes); the hyper-synthesis sees straight-through-rounded
``z`` in training. The released file imports ``ACCTX``, ``AGCTX``, ``EntropyParameters`` and
``LatentResidualPrediction`` from an unreleased fork; their insides here follow the paper's text
(:class:`ChannelAttentionContext`, :class:`GlobalInterAttention`) and CodecLab's 1x1 parameter
and 3x3 LRP networks.

CodecLab's first version, which model files before format 3 use, is
:class:`codeclab.compat.entropy_models.ACGCEntropyModelV1`.

Deviation from the paper: S2LIC computes the global-inter context with *deformable*
attention (each query attends to ``K`` points sampled at learned offsets). Here it is
multi-head attention over *all* positions of the decoded slices, average-pooled to at most
``grid x grid`` regions when the latent is larger than that: every query sees the whole image (exactly, position by position, up to ``grid x grid``
latents, i.e. 256x256-pixel training crops at ``grid = 16``), memory and time stay
``O(h w grid^2)`` like deformable attention's ``O(h w K)``, and there is no bilinear sampling
at learned fractional offsets, whose floating-point result is the riskiest part to reproduce
bit-exactly across machines. Everything the decoder needs is available at the same point of
decoding, so coding stays exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import ENTROPY_MODELS, checkerboard_masks, default_hidden, entropy_parameters
from .hyperprior import HyperpriorEntropyModel
from .channelwise import LatentResidualPrediction


class ChannelAttentionContext(nn.Module):
    """Adaptive channel-wise attention over the decoded slices, ``[B, C, h, w] -> [B, out, h, w]``.

    Transposed (channel) attention: ``q, k, v = DW3x3(Conv1x1(x))``, each ``[B, heads, C/heads, hw]``;
    ``A = softmax(t_h * norm(q) norm(k)^T)`` is a ``C/heads x C/heads`` channel affinity per head
    with a learnable temperature ``t_h``, and ``out = Conv1x1(A v)``. The weights given to each
    decoded channel therefore adapt to the image content rather than being fixed by a
    convolution, and the cost is linear in ``h w``.
    """

    def __init__(self, channels: int, out_channels: int, heads: int = 4):
        super().__init__()
        self.heads = math.gcd(heads, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.depthwise = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels)
        self.temperature = nn.Parameter(torch.ones(self.heads, 1, 1))
        self.proj = nn.Conv2d(channels, out_channels, 1)

    def forward(self, decoded: torch.Tensor) -> torch.Tensor:
        b, c, h, w = decoded.shape
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in self.depthwise(self.qkv(decoded)).chunk(3, 1))
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        return self.proj((attn.softmax(dim=-1) @ v).reshape(b, c, h, w))


class GlobalInterAttention(nn.Module):
    """Global attention from the current slice to the decoded slices, ``-> [B, out, h, w]``.

    Queries ``Conv1x1(features)`` (``features`` ``[B, Cq, h, w]``: what is known about the
    current slice at each position, here the hyperprior); keys and values ``Conv1x1(P(decoded))``
    where ``P`` average-pools ``[B, C, h, w]`` to at most ``grid x grid`` regions (identity on
    smaller latents); ``softmax(q k^T / sqrt(d)) v`` with ``heads`` heads of ``dim/heads``
    channels, so each of the ``h w`` queries attends to the whole decoded image; then
    ``Conv1x1`` to ``out`` channels.
    """

    def __init__(
        self, query_channels: int, channels: int, out_channels: int, dim: int = 64, heads: int = 4, grid: int = 16
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.heads, self.grid = heads, grid
        self.query = nn.Conv2d(query_channels, dim, 1)
        self.key_value = nn.Conv2d(channels, 2 * dim, 1)
        self.proj = nn.Conv2d(dim, out_channels, 1)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, self.heads, c // self.heads, h * w).transpose(-2, -1)

    def forward(self, features: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        if h > self.grid or w > self.grid:
            decoded = F.adaptive_avg_pool2d(decoded, (min(h, self.grid), min(w, self.grid)))
        k, v = self.key_value(decoded).chunk(2, 1)
        out = F.scaled_dot_product_attention(self._tokens(self.query(features)), self._tokens(k), self._tokens(v))
        return self.proj(out.transpose(-2, -1).reshape(b, -1, h, w))


def _heads(channels: int) -> int:
    """S2LIC's ``channels // 32`` attention heads (at least 1, and a divisor of ``channels``)."""
    heads = max(1, channels // 32)
    while channels % heads:
        heads -= 1
    return heads


@ENTROPY_MODELS.register("acgc")
class ACGCEntropyModel(HyperpriorEntropyModel):
    """S2LIC's entropy model: ``S`` slices, each a checkerboard, with channel-wise and global-inter
    attention contexts and separate anchor/non-anchor parameter and LRP networks (module docstring).

    Decoding runs the parameter networks twice per slice, the attention contexts once per slice.
    ``hidden`` (default ``7M/10``) is the width of the parameter and LRP networks; ``global_grid``
    the most key regions per side of the global-inter attention.
    """

    hyper_quantizer = "ste"

    def __init__(self, N: int, M: int, num_slices: int = 10, hidden: int | None = None, global_grid: int = 16,
                 quantizer: str = "ste", **rate_options):
        if rate_options.get("arithmetic", "float") != "float":
            raise ValueError("the acgc attention contexts have no integer path (arithmetic must be 'float'; "
                             "its files decode only under the floating-point configuration that wrote them)")
        super().__init__(N, M, quantizer, **rate_options)
        if M % num_slices:
            raise ValueError(f"M={M} is not divisible into {num_slices} slices")
        self.num_slices = num_slices
        self.build_contexts(M // num_slices, hidden or default_hidden(M), global_grid)

    def build_contexts(self, s: int, hidden: int, global_grid: int) -> None:
        """The context, parameter and LRP networks of the slices of ``s`` channels, ``hidden`` wide
        (the first version, :mod:`codeclab.compat`, builds its own)."""
        M, lrp = self.M, (hidden, hidden // 2)
        self.channel_wise_context = nn.ModuleList(
            ChannelAttentionContext(s * i, 2 * s, _heads(s * i)) if i else None for i in range(self.num_slices))
        self.global_inter_context = nn.ModuleList(
            GlobalInterAttention(s * i, s * i, s, s * i, _heads(s * i), global_grid) if i else None
            for i in range(self.num_slices))
        inputs = [2 * M + (3 * s if i else 0) for i in range(self.num_slices)]
        self.entropy_parameters_anchor = nn.ModuleList(entropy_parameters(c, hidden, 2 * s) for c in inputs)
        self.entropy_parameters_nonanchor = nn.ModuleList(entropy_parameters(c, hidden, 2 * s) for c in inputs)
        self.lrp_anchor = nn.ModuleList(
            LatentResidualPrediction(M + (i + 1) * s, lrp, s, (3, 3, 3)) for i in range(self.num_slices))
        self.lrp_nonanchor = nn.ModuleList(
            LatentResidualPrediction(M + (i + 1) * s, lrp, s, (3, 3, 3)) for i in range(self.num_slices))

    @property
    def portable(self) -> bool:
        return False

    def code_latent(self, y, hyper, step):
        slices = y.chunk(self.num_slices, 1) if y is not None else [None] * self.num_slices
        hyper_means = hyper.chunk(2, 1)[1]
        anchor, non_anchor = checkerboard_masks(*hyper.shape[-2:], hyper.device, anchor_parity=1)
        y_hats, likelihoods = [], []
        for i, y_slice in enumerate(slices):
            features = hyper
            if i:
                decoded = torch.cat(y_hats, dim=1)
                contexts = [self.channel_wise_context[i](decoded), self.global_inter_context[i](decoded, decoded)]
                features = torch.cat([*contexts, hyper], dim=1)
            scales, means = self.entropy_parameters_anchor[i](features).chunk(2, 1)
            y_anchor, lik_anchor = step(y_slice, scales, means, anchor)
            y_anchor = y_anchor + anchor * self.lrp_anchor[i](torch.cat([hyper_means, *y_hats, y_anchor], dim=1))
            scales, means = self.entropy_parameters_nonanchor[i](features).chunk(2, 1)
            y_non_anchor, lik_non_anchor = step(y_slice, scales, means, non_anchor)
            y_hat = torch.where(anchor, y_anchor, y_non_anchor)
            y_hat = y_hat + non_anchor * self.lrp_nonanchor[i](torch.cat([hyper_means, *y_hats, y_hat], dim=1))
            y_hats.append(y_hat)
            likelihoods.append(None if lik_anchor is None else torch.where(anchor, lik_anchor, lik_non_anchor))
        return torch.cat(y_hats, dim=1), (None if likelihoods[0] is None else torch.cat(likelihoods, dim=1))
