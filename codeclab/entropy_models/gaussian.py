"""The Gaussian conditional (Ballé et al., "Variational image compression with a scale
hyperprior", ICLR 2018): ``y_hat ~ N(mu, sigma^2) * U(-1/2, 1/2)`` with ``mu``, ``sigma``
predicted per element by a network.

Workflow: training uses ``y + U(-1/2, 1/2)`` and the likelihood
``Phi((1/2 - |y - mu|) / sigma) - Phi((-1/2 - |y - mu|) / sigma)``. Coding uses a fixed table
of scales (:func:`default_scale_table`: 64 log-spaced values in [0.11, 256]); each predicted
``sigma`` picks the smallest table scale >= it (:meth:`GaussianConditional.table_indexes`), and
``round(y - mu)`` is coded with that table's integer CDF. Numerically identical to compressai
1.2.8's ``GaussianConditional`` (same state_dict keys, likelihoods and tables).

Exact: the symbols, given the same ``sigma`` and ``mu``. With integer entropy-parameter networks
(:mod:`.integer`) ``sigma`` and ``mu`` are fixed-point values computed exactly, and the table
index is a comparison of float32 numbers, so it is the same on every machine. With float
networks a ``sigma`` that lands on a table boundary can take another index on another machine.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch
from torch import Tensor

from ..coding import CdfTables
from ..transforms.layers import LowerBound
from .tables import TableEntropyModel

SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256, 64


def default_scale_table(minimum: float = SCALES_MIN, maximum: float = SCALES_MAX, levels: int = SCALES_LEVELS) -> Tensor:
    """``exp(linspace(log(min), log(max), levels))``, float32 (compressai's ``get_scale_table``)."""
    return torch.exp(torch.linspace(math.log(minimum), math.log(maximum), levels))


def _standardized_cumulative(x: Tensor) -> Tensor:
    # erfc keeps precision in the far tails, where 1 - erf would round to 0.
    return 0.5 * torch.erfc(float(-(2**-0.5)) * x)


class GaussianConditional(TableEntropyModel):
    """Gaussian conditional with the scale table of :func:`default_scale_table`.

    Args:
        scale_bound: lower bound of predicted scales (also the smallest table scale).
        tail_mass: probability outside each table's support (escape-coded).
        scale_levels: number of tables (64, compressai's; variable-rate models use a finer grid).
    """

    TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")

    def __init__(self, scale_bound: float = 0.11, tail_mass: float = 1e-9, likelihood_bound: float = 1e-9,
                 scale_levels: int = SCALES_LEVELS):
        super().__init__(likelihood_bound)
        self.tail_mass, self.scale_levels = float(tail_mass), int(scale_levels)
        self.lower_bound_scale = LowerBound(scale_bound)
        # Filled by update_tables (empty until then, as compressai's GaussianConditional(None)).
        self.register_buffer("scale_table", torch.zeros(0))
        self.register_buffer("scale_bound", torch.tensor([float(scale_bound)]))

    def _likelihood(self, inputs: Tensor, scales: Tensor, means: Tensor | None) -> Tensor:
        values = inputs - means if means is not None else inputs
        scales = self.lower_bound_scale(scales)
        values = torch.abs(values)
        upper = _standardized_cumulative((0.5 - values) / scales)
        lower = _standardized_cumulative((-0.5 - values) / scales)
        return upper - lower

    def likelihood(self, values: Tensor, scales: Tensor, means: Tensor | None = None) -> Tensor:
        """Bounded likelihood of ``values`` as they are (no quantisation)."""
        return self.likelihood_lower_bound(self._likelihood(values, scales, means))

    def forward(self, inputs: Tensor, scales: Tensor, means: Tensor | None = None,
                training: bool | None = None) -> tuple[Tensor, Tensor]:
        """``(y_hat, likelihood)``: ``y + U(-1/2, 1/2)`` in training, ``round(y - mu) + mu`` otherwise."""
        training = self.training if training is None else training
        if training:
            outputs = inputs + torch.empty_like(inputs).uniform_(-0.5, 0.5)
        else:
            outputs = inputs.clone()
            if means is not None:
                outputs -= means
            outputs = torch.round(outputs)
            if means is not None:
                outputs += means
        return outputs, self.likelihood(outputs, scales, means)

    def coding_means(self, means: Tensor) -> Tensor:
        """The values the symbols count from: ``round(y - coding_means)`` is coded."""
        return means

    def table_indexes(self, scales: Tensor, means: Tensor | None = None) -> Tensor:
        """int32 index of the table for each scale: the smallest table scale >= ``max(scale, bound)``
        (the widest table when none is); ``means`` only matter to :class:`GridGaussianConditional`.
        Encoder and decoder both call this."""
        scales = self.lower_bound_scale(scales)
        # The count of table scales below each scale (binary search; the same comparisons as
        # counting them one by one, so the same indexes). NaN: the widest table.
        bounds = self.scale_table[:-1].to(device=scales.device, dtype=scales.dtype).contiguous()
        indexes = torch.searchsorted(bounds, scales.contiguous(), out_int32=True)
        return indexes.masked_fill_(torch.isnan(scales), len(bounds))

    @torch.no_grad()
    def update_tables(self, scale_table: Tensor | None = None) -> None:
        device = self.scale_bound.device
        self.scale_table = (default_scale_table(levels=self.scale_levels) if scale_table is None else scale_table.float()).to(device)
        pmf_center = self.pmf_centers(self.scale_table)
        pmf_length = 2 * pmf_center + 1
        max_length = int(torch.max(pmf_length).item())
        samples = torch.abs(torch.arange(max_length, device=device).int() - pmf_center[:, None]).float()
        samples_scale = self.scale_table.unsqueeze(1).float()
        upper = _standardized_cumulative((0.5 - samples) / samples_scale)
        lower = _standardized_cumulative((-0.5 - samples) / samples_scale)
        self._quantized_cdf = self._pmf_to_cdf(upper - lower, 2 * lower[:, :1], pmf_length, max_length)
        self._offset = -pmf_center
        self._cdf_length = pmf_length + 2

    def pmf_centers(self, scales: Tensor) -> Tensor:
        """Symbols each side of a zero-mean table of these scales: beyond them lies ``tail_mass``."""
        return torch.ceil(scales * -statistics.NormalDist().inv_cdf(self.tail_mass / 2)).int()

    @property
    def grid_ratio(self) -> float:
        """Ratio of consecutive table scales."""
        return (SCALES_MAX / SCALES_MIN) ** (1 / (self.scale_levels - 1))

    def fingerprint_sources(self) -> list[Tensor]:
        return [self.scale_table, torch.tensor([self.tail_mass])]


class GridGaussianConditional(GaussianConditional):
    """A Gaussian conditional whose latents stay on the integer grid whatever their means (STEM's
    P-frames on their reference's grid, :mod:`.spatiotemporal`): the symbol is
    ``round(y) - round(mu)``, so ``y_hat = round(y)``, and the mean moves only the probabilities.

    ``mean_offsets = K``: for table scales below ``offset_scale_limit`` the coded distribution is
    ``N(mu, sigma)`` with ``mu``'s fractional part rounded to ``1/K`` (``K + 1`` tables per scale,
    offsets ``-1/2 .. 1/2``); wider scales, where a sub-integer shift of the mean changes the rate
    by little, and ``K = 0`` use the zero-mean table around ``round(mu)``. The official STEM models
    the integer residual with a continuous mean; ``K = 16`` comes within 0.1 points of the saving a
    continuous mean gives (estimated on the stage-4 P-frame model, basketballpass; K = 8 lost 0.6).

    Table index (what encoder and decoder compute): ``s``, the scale's index as
    :meth:`GaussianConditional.table_indexes`, when ``K = 0`` or ``s`` is not among the
    ``S`` scales below the limit; otherwise ``L + s (K + 1) + b + K/2`` with ``L`` scale tables
    and ``b = round(K (mu - round(mu)))``. Exact as the base class's: ``mu`` comes from integer
    networks, and ``b`` is float32 arithmetic on it that every machine rounds alike (``K`` a power
    of two). The offset tables are stored beside the scale tables (``_offset_*`` buffers, narrow:
    their scales are small) and joined when coding.

    Training (and :meth:`likelihood`) uses the same rounded mean, with a straight-through gradient.
    """

    OFFSET_BUFFERS = ("_offset_quantized_cdf", "_offset_offset", "_offset_cdf_length")

    def __init__(self, mean_offsets: int = 0, offset_scale_limit: float = 2.0, **options):
        super().__init__(**options)
        if mean_offsets < 0 or mean_offsets & (mean_offsets - 1):
            raise ValueError(f"mean_offsets must be 0 or a power of two, got {mean_offsets}")
        self.mean_offsets, self.offset_scale_limit = int(mean_offsets), float(offset_scale_limit)
        # The largest table scale that gets offset tables (training decides with it as coding does).
        with torch.device("cpu"):  # also when the codec is built on the meta device (model checks)
            table = default_scale_table(levels=self.scale_levels)
        self.offset_scales_bound = float(table[table < self.offset_scale_limit].max()) if mean_offsets else 0.0
        if mean_offsets:
            self.TABLE_BUFFERS = GaussianConditional.TABLE_BUFFERS + self.OFFSET_BUFFERS
            for name in self.OFFSET_BUFFERS:
                self.register_buffer(name, torch.zeros(0, dtype=torch.int32))
        self._joined = None  # (source buffers, CdfTables) of the last join

    def coding_means(self, means: Tensor) -> Tensor:
        """The grid point the symbols count from: ``round(mu)``."""
        return torch.round(means)

    def offset_bins(self, means: Tensor) -> Tensor:
        """``b = round(K (mu - round(mu)))`` in ``[-K/2, K/2]`` (float)."""
        return torch.round((means - torch.round(means)) * self.mean_offsets)

    def _coded_means(self, scales: Tensor, means: Tensor) -> Tensor:
        """The mean of the distribution that codes each element (straight-through to ``means``)."""
        coded = self.coding_means(means)
        if self.mean_offsets:
            offsets = self.offset_bins(means) / self.mean_offsets
            coded = coded + torch.where(self.lower_bound_scale(scales) <= self.offset_scales_bound, offsets, 0.0)
        return means + (coded - means).detach()

    def _likelihood(self, inputs: Tensor, scales: Tensor, means: Tensor | None) -> Tensor:
        if means is None:
            raise ValueError("the grid Gaussian conditional needs means")
        return super()._likelihood(inputs, scales, self._coded_means(scales, means))

    def forward(self, inputs: Tensor, scales: Tensor, means: Tensor | None = None,
                training: bool | None = None) -> tuple[Tensor, Tensor]:
        training = self.training if training is None else training
        outputs = inputs + torch.empty_like(inputs).uniform_(-0.5, 0.5) if training else torch.round(inputs)
        return outputs, self.likelihood(outputs, scales, means)

    def table_indexes(self, scales: Tensor, means: Tensor | None = None) -> Tensor:
        indexes = super().table_indexes(scales)
        if not self.mean_offsets:
            return indexes
        offset_scales = self._offset_cdf_length.numel() // (self.mean_offsets + 1)
        bins = self.offset_bins(means).to(torch.int32) + self.mean_offsets // 2
        offset_indexes = len(self.scale_table) + indexes * (self.mean_offsets + 1) + bins
        return torch.where(indexes < offset_scales, offset_indexes, indexes)

    @torch.no_grad()
    def update_tables(self, scale_table: Tensor | None = None) -> None:
        super().update_tables(scale_table)
        if not self.mean_offsets:
            return
        K = self.mean_offsets
        small = self.scale_table[self.scale_table < self.offset_scale_limit]
        # Half a symbol wider each side than the zero-mean table: the mean moves by up to 1/2.
        center = self.pmf_centers(small) + 1
        length = 2 * center + 1
        max_length = int(length.max())
        shifts = torch.arange(-K // 2, K // 2 + 1, dtype=torch.float32) / K  # [K + 1]
        scales = small.repeat_interleave(K + 1)[:, None]
        shifts = shifts.repeat(len(small))[:, None]
        centers = center.repeat_interleave(K + 1)
        symbols = torch.arange(max_length, dtype=torch.float32) - centers[:, None].float()
        distance = torch.abs(symbols - shifts)
        pmf = _standardized_cumulative((0.5 - distance) / scales) - _standardized_cumulative((-0.5 - distance) / scales)
        below = centers[:, None].float() + 0.5
        tail = _standardized_cumulative((-below - shifts) / scales) + _standardized_cumulative((-below + shifts) / scales)
        lengths = length.repeat_interleave(K + 1)
        self._offset_quantized_cdf = self._pmf_to_cdf(pmf, tail, lengths, max_length).to(self.scale_table.device)
        self._offset_offset = -centers.to(self.scale_table.device)
        self._offset_cdf_length = (lengths + 2).to(self.scale_table.device)

    def tables(self):
        if not self.mean_offsets:
            return super().tables()
        sources = (self._quantized_cdf, self._offset_quantized_cdf, self._offset_cdf_length)
        if self._joined is None or any(a is not b for a, b in zip(self._joined[0], sources)):
            self._joined = (sources, self._join_tables())
        return self._joined[1]

    def _join_tables(self):
        base = super().tables()
        K, levels = self.mean_offsets, len(self.scale_table)
        offsets = self._offset_cdf_length.numel()
        if base.num_tables != levels:  # offset indexes start after the scale tables
            raise ValueError(f"{base.num_tables} scale tables for a scale table of {levels}")
        if offsets % (K + 1) or offsets // (K + 1) > levels or self._offset_quantized_cdf.shape[0] != offsets:
            raise ValueError(f"{offsets} offset tables do not make K + 1 = {K + 1} per scale for up to {levels} scales")
        extra = self._offset_quantized_cdf.cpu().numpy()
        width = max(base.cdfs.shape[1], extra.shape[1])
        cdfs = np.zeros((base.cdfs.shape[0] + offsets, width), dtype=np.int32)
        cdfs[: base.cdfs.shape[0], : base.cdfs.shape[1]] = base.cdfs
        cdfs[base.cdfs.shape[0]:, : extra.shape[1]] = extra
        return CdfTables(cdfs=cdfs,
                         lengths=np.concatenate([base.lengths, self._offset_cdf_length.cpu().numpy().astype(np.int32)]),
                         offsets=np.concatenate([base.offsets, self._offset_offset.cpu().numpy().astype(np.int32)]))

    def fingerprint_sources(self) -> list[Tensor]:
        extra = [torch.tensor([float(self.mean_offsets), self.offset_scale_limit])] if self.mean_offsets else []
        return super().fingerprint_sources() + extra
