"""Variable rate in one model: a bank of quantisation gains (QVRF: Tong et al., "QVRF: A
Quantization-error-aware Variable Rate Framework for Learned Image Compression", ICIP 2023;
official code: bytedance/QRAF).

Level ``l`` of ``L`` trains for ``lambda_l`` (log-spaced over ``[lambda_min, lambda_max]``) and
quantises the latent with step ``1 / g_l``: the entropy model codes ``g_l * y`` under
``N(g_l * mu, (g_l * sigma)^2)`` and reconstructs ``y_hat = round(g_l * (y - mu)) / g_l + mu``.
The hyperprior (``z``) does not depend on the level; level 0 has ``g_0 = 1``.

Exact decoding: every gain lies on the log grid of the Gaussian conditional's scale table,
``g_l = r^k_l`` with ``r`` the table's ratio and ``k_l`` an integer, so a gain moves a scale by
exactly ``k_l`` table entries (what an integer scale-index network adds; issue 13). The gains
are learned in the log domain and rounded to the grid with a straight-through gradient;
``k_0 = 0`` is fixed. They start at ``sqrt(lambda_l / lambda_min)`` (at high rate, the step that
balances ``lambda * MSE`` scales as ``1 / sqrt(lambda)``), or one grid step above the level
below where that is closer, so that every level starts with a gain of its own.

With the default 64 levels over ``[0.0018, 0.0483]`` the ``sqrt`` rule applies at none of the 63
levels: adjacent lambdas are 1.054x apart, a ``sqrt`` step of 1.027x, below one grid step (1.0309x
with 256 tables, 1.131x with 64), so every level starts one grid step above the one below
(gains ``1.0309^l``, up to 6.79 with 256 tables, 2327 with the default 64-entry table). The shipped
``models/zoo/mbt2018_mean_vr.safetensors`` was trained from that start.

QVRF's official ladder (bytedance/QRAF, commit 7d8da1f, ``ScaleHyperprior.py``): 8 levels,
``lmbda = [0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18]`` and gains initialised at
``sqrt(lmbda_l / lmbda_0)`` = ``1.0000, 1.3944, 1.9293, 2.6874, 3.7268, 5.1801, 7.1957, 10.0000``;
``lmbdas=`` gives such an explicit ladder (``codec=mbt2018_mean_qvrf``), where the ``sqrt`` rule
holds at every level (to within half a grid step). Its stage 1, a single-rate pre-training at the
largest lambda with gain 1, is ``module.single_rate_steps`` (:mod:`codeclab.training.rate_distortion`).

Deviation from QVRF: QVRF draws one level per batch; here every training sample draws its own
(the loss uses each sample's ``lambda``), which gives every batch the whole rate range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class GainBank(nn.Module):
    """``levels`` gains and their lambdas; ``grid_ratio`` is the scale table's ratio ``r``."""

    def __init__(self, levels: int = 64, lmbda_min: float = 0.0018, lmbda_max: float = 0.0483, grid_ratio: float = 1.0,
                 lmbdas: Sequence[float] | None = None):
        super().__init__()
        if lmbdas is not None:  # an explicit ladder (QVRF's official 8 levels)
            lmbdas = [float(v) for v in lmbdas]
            if any(b <= a for a, b in zip(lmbdas, lmbdas[1:])) or len(lmbdas) != levels:
                raise ValueError(f"lmbdas must be {levels} increasing values, got {lmbdas}")
            lmbda_min, lmbda_max = lmbdas[0], lmbdas[-1]
        if levels < 2 or not 0 < lmbda_min < lmbda_max or grid_ratio <= 1:
            raise ValueError(f"need levels >= 2, 0 < lmbda_min < lmbda_max and grid_ratio > 1; got {levels}, "
                             f"{lmbda_min}, {lmbda_max}, {grid_ratio}")
        self.levels, self.log_ratio = int(levels), math.log(grid_ratio)
        if lmbdas is not None:
            lmbdas = torch.tensor(lmbdas, dtype=torch.float32)
        else:
            lmbdas = torch.exp(torch.linspace(math.log(lmbda_min), math.log(lmbda_max), self.levels))
        self.register_buffer("lmbdas", lmbdas)
        # Grid units (k, continuous while training) of levels 1..L-1; level 0 is fixed at k = 0.
        steps = torch.maximum(0.5 * torch.log(lmbdas[1:] / lmbdas[0]) / self.log_ratio, torch.arange(1.0, self.levels))
        self.log_gain = nn.Parameter(steps)

    def grid_steps(self) -> Tensor:
        """``k_l``: integers (as floats) with a straight-through gradient to ``log_gain``, ``[L]``."""
        k = self.log_gain + (torch.round(self.log_gain) - self.log_gain).detach()
        return torch.cat([k.new_zeros(1), k])

    def gains(self) -> Tensor:
        """``g_l = r^k_l``, ``[L]``."""
        return torch.exp(self.grid_steps() * self.log_ratio)

    def gain(self, level: Tensor | int) -> Tensor:
        """Gain of one level (a 0-d tensor) or of one level per sample (``[B] -> [B, 1, 1, 1]``)."""
        level = torch.as_tensor(level, device=self.lmbdas.device)
        if level.numel() and (level.min() < 0 or level.max() >= self.levels):
            raise ValueError(f"rate level out of range [0, {self.levels})")
        gains = self.gains()[level]
        return gains if level.ndim == 0 else gains.view(-1, 1, 1, 1)

    def coding_gain(self, level: int) -> Tensor:
        """The gain of one level for coding, identical on every machine: ``exp`` in float64 on the
        CPU (``k_l`` is an integer), rounded to float32; float32 ``exp`` on another device could
        differ in the last bit and move a decoded value."""
        level = int(level)
        if not 0 <= level < self.levels:
            raise ValueError(f"rate level out of range [0, {self.levels})")
        k = 0.0 if level == 0 else float(torch.round(self.log_gain.detach()[level - 1].double().cpu()))
        return torch.tensor(math.exp(k * self.log_ratio), dtype=torch.float32, device=self.lmbdas.device)

    def lmbda(self, level: Tensor) -> Tensor:
        return self.lmbdas[level]


class GainStep:
    """Wraps a :class:`~.base.LatentStep`: codes ``g * y`` with ``g * scales`` and ``g * means``,
    returns ``y_hat / g``. Context models see ``y_hat`` in the unscaled domain, so the same
    ``code_latent`` serves every level."""

    def __init__(self, step, gain: Tensor):
        self.step, self.gain = step, gain

    def __call__(self, y, scales, means, mask=None):
        g = self.gain
        y_hat, likelihoods = self.step(None if y is None else y * g, scales * g, None if means is None else means * g, mask)
        return y_hat / g, likelihoods


def split_gain(step) -> tuple[Tensor | float, object]:
    """``(gain, inner step)`` of a :class:`GainStep`; ``(1.0, step)`` for a fixed-rate step, so that
    ``torch.is_tensor(gain)`` says whether a level scales the coded values."""
    return (step.gain, step.step) if isinstance(step, GainStep) else (1.0, step)
