"""Channel-wise autoregressive context, ChARM (Minnen & Singh, "Channel-wise Autoregressive
Entropy Models for Learned Image Compression", ICIP 2020).

``y`` ``[B, M, h, w]`` is split into ``S`` slices of ``M/S`` channels, coded in order. Slice
``i`` is conditioned on the hyperprior and the already decoded slices (at most
``max_support`` of them, the first ones, as in the paper), and after decoding it is refined by
latent residual prediction (LRP): ``y_hat_i += 0.5 * tanh(LRP_i([mu_hyper, y_hat_<i, y_hat_i]))``,
which predicts part of the quantisation error from information the decoder has.

The networks are the official code's (tensorflow/compression
``models/ms2020.py``): separate mean and scale hyper-synthesis networks (``N -> N -> 4M/5 -> M``,
5x5 up, 5x5 up, 3x3, ReLU after each), slice networks ``5x5 (7M/10) -> 5x5 (2M/5) -> 3x3``
(224 and 128 at ``M = 320``) with ReLU, and ``z`` rounded with a straight-through gradient
for the hyper-synthesis in training; ``max_support_slices = 5`` and the LRP input
``[mu_hyper, y_hat_<i, y_hat_i]`` are ms2020's too. CodecLab's first version, which model files
written before format 3 use, is :class:`codeclab.compat.entropy_models.ChannelwiseEntropyModelV1`.
Not followed: ms2020's scale networks predict a continuous
index into its scale table, CodecLab's predict the scale.
"""

from __future__ import annotations

import torch
from torch import nn

from ..transforms.layers import deconv
from .base import ENTROPY_MODELS
from .hyperprior import HyperpriorEntropyModel
from .integer import HalfTanh

def slice_transform(in_channels: int, hidden: tuple[int, int], out_channels: int, kernels=(5, 5, 3)) -> nn.Sequential:
    """A per-slice convolution stack ``in -> hidden[0] -> hidden[1] -> out`` with ReLUs; kernel
    sizes ``kernels`` (ms2020: 5, 5, 3)."""
    widths = (in_channels, *hidden, out_channels)
    layers = []
    for i, k in enumerate(kernels):
        layers += [nn.Conv2d(widths[i], widths[i + 1], k, padding=k // 2), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])


class SplitHyperSynthesis(nn.Module):
    """ms2020's two hyper-synthesis networks, ``z_hat -> [scale features, mean features]`` (``2M``
    channels, in the order the hyperprior's ``h_s`` output is split)."""

    def __init__(self, N: int, M: int):
        super().__init__()

        def network():
            return nn.Sequential(
                deconv(N, N), nn.ReLU(inplace=True),
                deconv(N, 4 * M // 5), nn.ReLU(inplace=True),
                nn.Conv2d(4 * M // 5, M, 3, padding=1), nn.ReLU(inplace=True),
            )

        self.scale, self.mean = network(), network()

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.scale(z_hat), self.mean(z_hat)], dim=1)


class LatentResidualPrediction(nn.Module):
    """``[B, in, h, w] -> [B, C, h, w]``: ``0.5 * tanh(f(x))``, a bounded correction of ``y_hat``."""

    def __init__(self, in_channels: int, hidden: tuple[int, int], channels: int, kernels=(5, 5, 3)):
        super().__init__()
        self.net = slice_transform(in_channels, hidden, channels, kernels)
        self.bound = HalfTanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bound(self.net(x))


@ENTROPY_MODELS.register("charm")
class ChannelwiseEntropyModel(HyperpriorEntropyModel):
    """ChARM: mean-scale hyperprior + channel-wise autoregressive slices + LRP.

    Slice ``i`` (``s = M/S`` channels): ``mu_i = f_i([mu_hyper, y_hat_support])``,
    ``sigma_i = g_i([sigma_hyper, y_hat_support])``, where ``(sigma_hyper, mu_hyper)`` are the
    two halves of ``h_s(z_hat)`` and the support is the first ``min(i, max_support)`` decoded
    slices (``max_support < 0``: all). One network pass per slice when decoding. ``hidden``: the
    widths of the slice networks (default ``7M/10, 2M/5``: ms2020's 224, 128 at ``M = 320``; one
    int ``h``: ``h, h``).
    """

    hyper_quantizer = "ste"
    kernels = (5, 5, 3)

    def __init__(self, N: int, M: int, num_slices: int = 10, max_support: int = 5,
                 hidden: int | tuple[int, int] | None = None, quantizer: str = "ste", **rate_options):
        super().__init__(N, M, quantizer, h_s=self.hyper_synthesis(N, M), **rate_options)
        if M % num_slices:
            raise ValueError(f"M={M} is not divisible into {num_slices} slices")
        self.num_slices, self.max_support = num_slices, max_support
        s, hidden = M // num_slices, self.slice_widths(M, hidden)
        support = [s * (i if max_support < 0 else min(i, max_support)) for i in range(num_slices)]
        self.mean_transforms = nn.ModuleList(slice_transform(M + c, hidden, s, self.kernels) for c in support)
        self.scale_transforms = nn.ModuleList(slice_transform(M + c, hidden, s, self.kernels) for c in support)
        self.lrp_transforms = nn.ModuleList(LatentResidualPrediction(M + c + s, hidden, s, self.kernels) for c in support)
        self.integer_networks(self.mean_transforms, self.scale_transforms, self.lrp_transforms)

    @staticmethod
    def hyper_synthesis(N: int, M: int) -> nn.Module | None:
        """ms2020's split mean and scale hyper-synthesis."""
        return SplitHyperSynthesis(N, M)

    @staticmethod
    def slice_widths(M: int, hidden: int | tuple[int, int] | None) -> tuple[int, int]:
        """The two hidden widths of the slice networks (class docstring)."""
        if hidden is None:
            return 7 * M // 10, 2 * M // 5
        return (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)

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
