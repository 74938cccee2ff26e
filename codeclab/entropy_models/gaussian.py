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

import torch
from torch import Tensor

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

    def table_indexes(self, scales: Tensor) -> Tensor:
        """int32 index of the table for each scale: the smallest table scale >= ``max(scale, bound)``
        (the widest table when none is). Encoder and decoder both call this."""
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
        multiplier = -statistics.NormalDist().inv_cdf(self.tail_mass / 2)
        pmf_center = torch.ceil(self.scale_table * multiplier).int()
        pmf_length = 2 * pmf_center + 1
        max_length = int(torch.max(pmf_length).item())
        samples = torch.abs(torch.arange(max_length, device=device).int() - pmf_center[:, None]).float()
        samples_scale = self.scale_table.unsqueeze(1).float()
        upper = _standardized_cumulative((0.5 - samples) / samples_scale)
        lower = _standardized_cumulative((-0.5 - samples) / samples_scale)
        self._quantized_cdf = self._pmf_to_cdf(upper - lower, 2 * lower[:, :1], pmf_length, max_length)
        self._offset = -pmf_center
        self._cdf_length = pmf_length + 2

    @property
    def grid_ratio(self) -> float:
        """Ratio of consecutive table scales."""
        return (SCALES_MAX / SCALES_MIN) ** (1 / (self.scale_levels - 1))

    def fingerprint_sources(self) -> list[Tensor]:
        return [self.scale_table, torch.tensor([self.tail_mass])]
