"""ELIC's space-channel context model, SCCTX (He et al., "ELIC: Efficient Learned Image Compression
with Unevenly Grouped Space-Channel Contextual Adaptive Coding", CVPR 2022), as compressai's
``elic2022-official`` defines it.

``y`` ``[B, M, h, w]`` is split into uneven channel groups (``[16, 16, 32, 64, M - 128]``),
coded in order; group ``k`` (``g`` channels) is coded as a checkerboard, anchors at ``(i + j)``
even::

    F_k = [g_ch^k(y_hat_<k) (2g, k > 0), h_s(z_hat) (2N)]        channel context: 5x5 convs 224, 128
    anchors:      (sigma, mu) = EP_k([0 (2g), F_k])
    non-anchors:  (sigma, mu) = EP_k([g_sp^k(y_hat anchors) (2g), F_k])   g_sp: 5x5 checkerboard conv

with ``EP_k`` three 1x1 convolutions ramping linearly from its input width to ``2g`` (hidden widths
at least ``2N``). ``y_hat = round(y - mu) + mu`` with a straight-through gradient, and the
hyper-synthesis sees straight-through-rounded ``z`` in training. Two network passes per group.

The checkerboard context is a plain 5x5 convolution of a latent whose non-anchors are zero,
which is compressai's masked convolution at the non-anchors (the weights it masks only ever
meet zeros), so every network here can be an integer one (``arithmetic="integer"``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..transforms.layers import conv, deconv
from .base import ENTROPY_MODELS, checkerboard_masks
from .integer import at_positions
from .hyperprior import HyperpriorEntropyModel

DEFAULT_GROUPS = (16, 16, 32, 64)  # + the rest of M


def parameter_ramp(in_channels: int, out_channels: int, min_channels: int) -> nn.Sequential:
    """Three 1x1 convolutions whose widths go linearly from ``in`` to ``out`` (floored; hidden ones
    at least ``min_channels``), ReLU between (compressai's ``sequential_channel_ramp``)."""
    # compressai computes the widths in float32 with torch.linspace; so does this (on the CPU, so
    # that building on the meta device works), to get the same floors.
    widths = torch.linspace(in_channels, out_channels, 4, device="cpu").floor().int().tolist()
    widths[1:3] = [max(w, min_channels) for w in widths[1:3]]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(a, b, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])


@ENTROPY_MODELS.register("elic")
class ElicEntropyModel(HyperpriorEntropyModel):
    """SCCTX over uneven channel groups (see the module docstring). ``groups``: the group sizes
    (default ``16, 16, 32, 64, M - 128``)."""

    hyper_quantizer = "ste"

    def __init__(self, N: int, M: int, groups=None, quantizer: str = "ste", **options):
        h_a = nn.Sequential(conv(M, N, 3, 1), nn.ReLU(inplace=True), conv(N, N, 5, 2), nn.ReLU(inplace=True),
                            conv(N, N, 5, 2))
        h_s = nn.Sequential(deconv(N, N, 5, 2), nn.ReLU(inplace=True), deconv(N, N * 3 // 2, 5, 2),
                            nn.ReLU(inplace=True), deconv(N * 3 // 2, N * 2, 3, 1))
        super().__init__(N, M, quantizer, h_a=h_a, h_s=h_s, **options)
        self.groups = list(groups) if groups else [*DEFAULT_GROUPS, M - sum(DEFAULT_GROUPS)]
        if sum(self.groups) != M or min(self.groups) < 1:
            raise ValueError(f"groups {self.groups} must be positive and sum to M={M}")
        g = self.groups
        self.channel_context = nn.ModuleList(
            None if k == 0 else nn.Sequential(
                conv(sum(g[:k]), 224, 5, 1), nn.ReLU(inplace=True), conv(224, 128, 5, 1), nn.ReLU(inplace=True),
                conv(128, 2 * g[k], 5, 1),
            )
            for k in range(len(g))
        )
        self.spatial_context = nn.ModuleList(conv(g[k], 2 * g[k], 5, 1) for k in range(len(g)))
        self.entropy_parameters = nn.ModuleList(
            parameter_ramp(2 * g[k] + (2 * g[k] if k else 0) + 2 * N, 2 * g[k], 2 * N) for k in range(len(g)))
        self.integer_networks(*self.channel_context[1:], self.spatial_context, self.entropy_parameters)

    def code_latent(self, y, hyper, step):
        slices = y.split(self.groups, 1) if y is not None else [None] * len(self.groups)
        anchor, non_anchor = checkerboard_masks(*hyper.shape[-2:], hyper.device)
        y_hats, likelihoods = [], []
        for k, y_k in enumerate(slices):
            features = hyper if k == 0 else torch.cat([self.channel_context[k](torch.cat(y_hats, 1)), hyper], 1)
            zeros = hyper.new_zeros(hyper.shape[0], 2 * self.groups[k], *hyper.shape[-2:])
            scales, means = at_positions(self.entropy_parameters[k], torch.cat([zeros, features], 1), anchor).chunk(2, 1)
            y_anchor, lik_anchor = step(y_k, scales, means, anchor)
            context = self.spatial_context[k](y_anchor)
            scales, means = at_positions(self.entropy_parameters[k], torch.cat([context, features], 1), non_anchor).chunk(2, 1)
            y_non_anchor, lik_non_anchor = step(y_k, scales, means, non_anchor)
            y_hats.append(torch.where(anchor, y_anchor, y_non_anchor))
            likelihoods.append(None if lik_anchor is None else torch.where(anchor, lik_anchor, lik_non_anchor))
        return torch.cat(y_hats, 1), (None if likelihoods[0] is None else torch.cat(likelihoods, 1))
