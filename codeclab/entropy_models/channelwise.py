"""Channel-wise autoregressive context, ChARM (Minnen & Singh, "Channel-wise Autoregressive
Entropy Models for Learned Image Compression", ICIP 2020).

``y`` ``[B, M, h, w]`` is split into ``S`` slices of ``M/S`` channels, coded in order. Slice
``i`` is conditioned on the hyperprior and the already decoded slices (at most
``max_support`` of them, the first ones, as in the paper), and after decoding it is refined by
latent residual prediction (LRP): ``y_hat_i += 0.5 * tanh(LRP_i([mu_hyper, y_hat_<i, y_hat_i]))``,
which predicts part of the quantisation error from information the decoder has.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ENTROPY_MODELS, default_hidden
from .hyperprior import HyperpriorEntropyModel
from .integer import HalfTanh


def slice_transform(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """The per-slice 3x3 convolution stack of ChARM (``in -> hidden -> hidden/2 -> out``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden // 2, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden // 2, out_channels, 3, padding=1),
    )


class LatentResidualPrediction(nn.Module):
    """``[B, in, h, w] -> [B, C, h, w]``: ``0.5 * tanh(f(x))``, a bounded correction of ``y_hat``."""

    def __init__(self, in_channels: int, hidden: int, channels: int):
        super().__init__()
        self.net = slice_transform(in_channels, hidden, channels)
        self.bound = HalfTanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bound(self.net(x))


@ENTROPY_MODELS.register("charm")
class ChannelwiseEntropyModel(HyperpriorEntropyModel):
    """ChARM: mean-scale hyperprior + channel-wise autoregressive slices + LRP.

    Slice ``i`` (``s = M/S`` channels): ``mu_i = f_i([mu_hyper, y_hat_support])``,
    ``sigma_i = g_i([sigma_hyper, y_hat_support])``, where ``(sigma_hyper, mu_hyper)`` are the
    two halves of ``h_s(z_hat)`` and the support is the first ``min(i, max_support)`` decoded
    slices (``max_support < 0``: all). One network pass per slice when decoding. ``hidden``
    (default ``7M/10``, the paper's 224 at ``M = 320``) is the width of the slice networks.
    """

    def __init__(self, N: int, M: int, num_slices: int = 10, max_support: int = 5, hidden: int | None = None,
                 quantizer: str = "ste", **rate_options):
        super().__init__(N, M, quantizer, **rate_options)
        if M % num_slices:
            raise ValueError(f"M={M} is not divisible into {num_slices} slices")
        self.num_slices, self.max_support = num_slices, max_support
        s, hidden = M // num_slices, hidden or default_hidden(M)
        support = [s * (i if max_support < 0 else min(i, max_support)) for i in range(num_slices)]
        self.mean_transforms = nn.ModuleList(slice_transform(M + c, hidden, s) for c in support)
        self.scale_transforms = nn.ModuleList(slice_transform(M + c, hidden, s) for c in support)
        self.lrp_transforms = nn.ModuleList(LatentResidualPrediction(M + c + s, hidden, s) for c in support)
        self.integer_networks(self.mean_transforms, self.scale_transforms, self.lrp_transforms)

    def code_latent(self, y, hyper, step):
        hyper_scales, hyper_means = hyper.chunk(2, 1)
        slices = y.chunk(self.num_slices, 1) if y is not None else [None] * self.num_slices
        y_hats, likelihoods = [], []
        for i, y_slice in enumerate(slices):
            support = y_hats if self.max_support < 0 else y_hats[: self.max_support]
            means = self.mean_transforms[i](torch.cat([hyper_means, *support], dim=1))
            scales = self.scale_transforms[i](torch.cat([hyper_scales, *support], dim=1))
            y_hat, lik = step(y_slice, scales, means)
            y_hat = y_hat + self.lrp_transforms[i](torch.cat([hyper_means, *support, y_hat], dim=1))
            y_hats.append(y_hat)
            likelihoods.append(lik)
        return torch.cat(y_hats, dim=1), (None if likelihoods[0] is None else torch.cat(likelihoods, dim=1))
