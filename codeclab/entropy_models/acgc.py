"""ACGC: the adaptive channel-wise and global-inter attention context of S2LIC (Wang et al.,
"S2LIC: Learned Image Compression with the SwinV2 Block, Adaptive Channel-wise and
Global-inter Attention Context").

``architecture="s2lic"`` (default) is the wiring of the released ``code/s2lic.py``
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

``architecture="legacy"`` is CodecLab's first version, which model files before format 3 use:
shared anchor/non-anchor parameters with a 5x5 spatial context of the decoded anchors (anchors at
``(i + j)`` even), global attention queried from the hyperprior with ``2s`` outputs, one LRP per
slice over ``[F_i, y_hat_i]``, noisy ``z``.

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
from .checkerboard import CheckerboardSpatialContext, code_checkerboard


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


ARCHITECTURES = ("s2lic", "legacy")


def _heads(channels: int) -> int:
    """S2LIC's ``channels // 32`` attention heads (at least 1, and a divisor of ``channels``)."""
    heads = max(1, channels // 32)
    while channels % heads:
        heads -= 1
    return heads


@ENTROPY_MODELS.register("acgc")
class ACGCEntropyModel(HyperpriorEntropyModel):
    """S2LIC's entropy model: slices x checkerboard, channel-wise + global-inter attention, LRP.

    Slice ``i`` (``s = M/S`` channels), with ``F_i = [h_s(z_hat), CA_i(y_hat_<i), GA_i(h_s(z_hat), y_hat_<i)]``
    (only ``h_s(z_hat)`` for the first slice; each context has ``2s`` channels):

    * anchors: ``(sigma, mu) = EP_i([F_i, 0])``;
    * non-anchors: ``(sigma, mu) = EP_i([F_i, Conv5x5(y_hat_i anchors)])``;
    * ``y_hat_i += 0.5 tanh(LRP_i([F_i, y_hat_i]))``.

    Decoding runs ``EP_i`` exactly twice per slice (``2S`` passes), the attention contexts once
    per slice. ``hidden`` (default ``7M/10``) is the width of ``EP_i`` and ``LRP_i``;
    ``attention_dim`` (default ``M/5``), ``heads`` and ``global_grid`` (the most key regions per
    side) size the global-inter attention, ``heads`` also the channel attention.
    """

    def __init__(
        self, N: int, M: int, num_slices: int = 10, hidden: int | None = None, attention_dim: int | None = None,
        heads: int = 4, global_grid: int = 16, quantizer: str = "ste", architecture: str = "s2lic", **rate_options,
    ):
        if rate_options.get("arithmetic", "float") != "float":
            raise ValueError("the acgc attention contexts have no integer path (arithmetic must be 'float'; "
                             "its files decode only under the floating-point configuration that wrote them)")
        super().__init__(N, M, quantizer, **rate_options)
        if M % num_slices:
            raise ValueError(f"M={M} is not divisible into {num_slices} slices")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
        self.num_slices, self.architecture = num_slices, architecture
        s, hidden = M // num_slices, hidden or default_hidden(M)
        lrp = (hidden, hidden // 2)
        if architecture == "s2lic":
            self.hyper_quantizer = "ste"
            self.channel_wise_context = nn.ModuleList(
                ChannelAttentionContext(s * i, 2 * s, _heads(s * i)) if i else None for i in range(num_slices))
            self.global_inter_context = nn.ModuleList(
                GlobalInterAttention(s * i, s * i, s, s * i, _heads(s * i), global_grid) if i else None
                for i in range(num_slices))
            inputs = [2 * M + (3 * s if i else 0) for i in range(num_slices)]
            self.entropy_parameters_anchor = nn.ModuleList(entropy_parameters(c, hidden, 2 * s) for c in inputs)
            self.entropy_parameters_nonanchor = nn.ModuleList(entropy_parameters(c, hidden, 2 * s) for c in inputs)
            self.lrp_anchor = nn.ModuleList(
                LatentResidualPrediction(M + (i + 1) * s, lrp, s, (3, 3, 3)) for i in range(num_slices))
            self.lrp_nonanchor = nn.ModuleList(
                LatentResidualPrediction(M + (i + 1) * s, lrp, s, (3, 3, 3)) for i in range(num_slices))
            return
        attention_dim = attention_dim or M // 5
        features = [2 * M + (4 * s if i else 0) for i in range(num_slices)]
        self.channel_contexts = nn.ModuleList(ChannelAttentionContext(i * s, 2 * s, heads) for i in range(1, num_slices))
        self.global_contexts = nn.ModuleList(
            GlobalInterAttention(2 * M, i * s, 2 * s, attention_dim, heads, global_grid) for i in range(1, num_slices)
        )
        self.spatial_contexts = nn.ModuleList(CheckerboardSpatialContext(s, 2 * s) for _ in range(num_slices))
        self.entropy_parameters = nn.ModuleList(entropy_parameters(f + 2 * s, hidden, 2 * s) for f in features)
        self.lrp_transforms = nn.ModuleList(LatentResidualPrediction(f + s, lrp, s, (3, 3, 3)) for f in features)

    @property
    def portable(self) -> bool:
        return False

    def code_latent(self, y, hyper, step):
        if self.architecture == "legacy":
            return self._code_legacy(y, hyper, step)
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

    def _code_legacy(self, y, hyper, step):
        slices = y.chunk(self.num_slices, 1) if y is not None else [None] * self.num_slices
        y_hats, likelihoods = [], []
        for i, y_slice in enumerate(slices):
            features = [hyper]
            if i:
                decoded = torch.cat(y_hats, dim=1)
                features += [self.channel_contexts[i - 1](decoded), self.global_contexts[i - 1](hyper, decoded)]
            features = torch.cat(features, dim=1)
            y_hat, lik = code_checkerboard(y_slice, features, step, self.entropy_parameters[i], self.spatial_contexts[i])
            y_hats.append(y_hat + self.lrp_transforms[i](torch.cat([features, y_hat], dim=1)))
            likelihoods.append(lik)
        return torch.cat(y_hats, dim=1), (None if likelihoods[0] is None else torch.cat(likelihoods, dim=1))
