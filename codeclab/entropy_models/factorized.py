"""The factorized prior (Ballé et al., "Variational image compression with a scale
hyperprior", ICLR 2018, appendix 6.1; first used in "End-to-end Optimized Image
Compression", ICLR 2017): one learned univariate density per channel.

:class:`EntropyBottleneck` is the density layer (numerically identical to compressai 1.2.8's
layer of the same name, same state_dict keys). Its cumulative is a small per-channel network
``c(x) = f_K(...f_1(x))`` with ``f_k(x) = softplus(H_k) x + b_k`` followed, except at the last
layer, by ``x + tanh(a_k) tanh(x)``; the likelihood of a value is ``sigmoid(c(x + 1/2)) -
sigmoid(c(x - 1/2))``, i.e. the density convolved with ``U(-1/2, 1/2)``. The ``quantiles``
(tail_mass/2, median, 1 - tail_mass/2 of each channel) train on :meth:`loss` alone and set
the support of the coding tables.

Workflow: train with additive uniform noise (``forward`` in training mode); :meth:`update_tables`
turns the densities into integer CDF tables (at export); coding rounds ``y - median`` to
integers and codes them with the channel's table (:mod:`.latent_coding`). Exact: the symbols.

:class:`FactorizedEntropyModel` (``"factorized"``) is the whole latent entropy model of
bmshj2018-factorized: ``y`` coded with this prior in one stream.

::

    y ──► round(y - median) ──► rANS(table of channel c) ──► stream
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import ENTROPY_MODELS, LatentEntropyModel
from .latent_coding import decode_factorized, encode_factorized, quantize_factorized
from .tables import TableEntropyModel


class EntropyBottleneck(TableEntropyModel):
    """Learned factorized density of a ``[B, C, ...]`` latent.

    Args:
        channels: ``C``.
        tail_mass: probability mass outside the table support (escape-coded).
        init_scale: initial width of the densities.
        filters: hidden widths of the per-channel cumulative network.
    """

    def __init__(self, channels: int, tail_mass: float = 1e-9, init_scale: float = 10, filters=(3, 3, 3, 3),
                 likelihood_bound: float = 1e-9):
        super().__init__(likelihood_bound)
        self.channels, self.filters = int(channels), tuple(int(f) for f in filters)
        self.init_scale, self.tail_mass = float(init_scale), float(tail_mass)
        widths = (1,) + self.filters + (1,)
        scale = self.init_scale ** (1 / (len(self.filters) + 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(self.filters) + 1):
            matrix = torch.full((self.channels, widths[i + 1], widths[i]), float(np.log(np.expm1(1 / scale / widths[i + 1]))))
            self.matrices.append(nn.Parameter(matrix))
            self.biases.append(nn.Parameter(torch.empty(self.channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(self.channels, widths[i + 1], 1)))
        self.quantiles = nn.Parameter(torch.tensor([-self.init_scale, 0, self.init_scale]).repeat(self.channels, 1, 1))
        target = math.log(2 / self.tail_mass - 1)
        self.register_buffer("target", torch.tensor([-target, 0, target]))

    def _logits_cumulative(self, inputs: Tensor, stop_gradient: bool) -> Tensor:
        logits = inputs
        for i in range(len(self.filters) + 1):
            matrix, bias = self.matrices[i], self.biases[i]
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.filters):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def _likelihood(self, inputs: Tensor, stop_gradient: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """``(likelihood, lower, upper)`` of ``inputs`` ``[C, 1, n]``; lower/upper are the logits at x -/+ 1/2."""
        lower = self._logits_cumulative(inputs - 0.5, stop_gradient)
        upper = self._logits_cumulative(inputs + 0.5, stop_gradient)
        return torch.sigmoid(upper) - torch.sigmoid(lower), lower, upper

    def medians(self) -> Tensor:
        """``[C, 1, 1]``: the median of each channel's density."""
        return self.quantiles[:, :, 1:2]

    def broadcast_medians(self, ndim: int) -> Tensor:
        """The medians as ``[1, C, 1, ...]``, to broadcast against an ``ndim``-D latent ``[B, C, ...]``."""
        return self.medians().reshape(1, -1, *([1] * (ndim - 2)))

    def loss(self) -> Tensor:
        """Auxiliary loss pulling ``quantiles`` to the tail_mass/2, 1/2, 1 - tail_mass/2 points."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def fit_quantiles(self, steps: int = 2000, lr: float = 0.2) -> float:
        """Minimise :meth:`loss` over ``quantiles`` alone (the density is not touched); returns the
        final loss. The loss depends on no data, so this settles the quantiles (hence the table
        ranges) on the final density after training, however far the density moved late in it."""
        optimizer = torch.optim.Adam([self.quantiles], lr=lr)
        # Large steps first (a fresh density's tails are far out), then small ones to settle.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = self.loss()
            loss.backward()
            optimizer.step()
            schedule.step()
        return float(self.loss().detach())

    def channel_likelihood(self, values: Tensor) -> Tensor:
        """Bounded likelihood of ``values`` ``[B, C, ...]`` (no quantisation), same shape."""
        channels_first = values.transpose(0, 1)
        flat = channels_first.reshape(values.shape[1], 1, -1)
        likelihood = self.likelihood_lower_bound(self._likelihood(flat)[0])
        return likelihood.reshape(channels_first.shape).transpose(0, 1)

    def forward(self, x: Tensor, training: bool | None = None) -> tuple[Tensor, Tensor]:
        """``(x_hat, likelihood)``: ``x + U(-1/2, 1/2)`` in training, ``round(x - median) + median`` otherwise."""
        training = self.training if training is None else training
        perm = (1, 0, *range(2, x.ndim))  # channels first: one density per row
        x = x.permute(*perm).contiguous()
        shape = x.shape
        values = x.reshape(x.shape[0], 1, -1)
        if training:
            outputs = values + torch.empty_like(values).uniform_(-0.5, 0.5)
        else:
            medians = self.medians()
            outputs = values.clone()
            outputs -= medians
            outputs = torch.round(outputs)
            outputs += medians
        likelihood = self.likelihood_lower_bound(self._likelihood(outputs)[0])
        outputs = outputs.reshape(shape).permute(*perm).contiguous()
        likelihood = likelihood.reshape(shape).permute(*perm).contiguous()
        return outputs, likelihood

    @torch.no_grad()
    def update_tables(self) -> None:
        medians = self.quantiles[:, 0, 1]
        minima = torch.clamp(torch.ceil(medians - self.quantiles[:, 0, 0]).int(), min=0)
        maxima = torch.clamp(torch.ceil(self.quantiles[:, 0, 2] - medians).int(), min=0)
        pmf_start = medians - minima
        pmf_length = maxima + minima + 1
        max_length = int(pmf_length.max().item())
        samples = torch.arange(max_length, device=pmf_start.device)[None, :] + pmf_start[:, None, None]
        pmf, lower, upper = self._likelihood(samples, stop_gradient=True)
        tail_mass = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
        self._quantized_cdf = self._pmf_to_cdf(pmf[:, 0, :], tail_mass, pmf_length, max_length)
        self._offset = -minima
        self._cdf_length = pmf_length + 2

    def fingerprint_sources(self) -> list[Tensor]:
        return [p for _, p in sorted(self.named_parameters())]


@ENTROPY_MODELS.register("factorized")
class FactorizedEntropyModel(LatentEntropyModel):
    """``y`` ``[B, M, h, w]`` under a factorized prior (bmshj2018-factorized); one stream.

    ``quantizer``: what the synthesis sees in training, ``"noise"`` (``y + U(-1/2, 1/2)``,
    compressai's choice) or ``"ste"`` (``round(y - median) + median`` with a straight-through
    gradient).
    """

    num_streams = 1
    downsampling = 1

    def __init__(self, M: int, quantizer: str = "noise", *, N: int | None = None, **bottleneck_options):
        # N (unused: a factorized prior has no side latent) is accepted so that an entropy config
        # given N and M, as every hyperprior's is (codec/entropy=factorized with codec=leaderboard), composes.
        super().__init__(quantizer)
        self.M = int(M)
        self.entropy_bottleneck = EntropyBottleneck(M, **bottleneck_options)

    def forward(self, y, level=None):
        self.check_level(level)
        y_hat, likelihoods = self.entropy_bottleneck(y)
        if self.quantizer == "ste" and self.training:
            medians = self.entropy_bottleneck.broadcast_medians(y.ndim).detach()
            y_hat = self.round_ste(y, medians)
        return {"y_hat": y_hat, "likelihoods": {"y": likelihoods}}

    def quantize(self, y, level=None):
        self.check_level(level)
        return quantize_factorized(self.entropy_bottleneck, y)

    refinable = True

    def side_latent(self, y):
        return None

    def relaxed(self, y, side, level, rounding):
        self.check_level(level)
        y_tilde = rounding(y, self.entropy_bottleneck.broadcast_medians(y.ndim))
        return {"y_hat": y_tilde, "likelihoods": {"y": self.entropy_bottleneck.channel_likelihood(y_tilde)}}

    def compress(self, y, coder, level=None, side=None):
        self.check_level(level)
        encoder = coder.encoder()
        y_hat = encode_factorized(self.entropy_bottleneck, y, encoder)
        return [encoder.finish()], y_hat

    def decompress(self, streams, shape, coder, level=None):
        self.check_level(level)
        return decode_factorized(self.entropy_bottleneck, coder.decoder(streams[0]), (1, self.M, *shape))
