"""The two numbers every report is made of, computed one way everywhere.

* :func:`bits_per_pixel`: ``8 * bytes / (H * W)``, with the bytes of the whole file (header
  included) and ``H x W`` the original image size (before any padding).
* :func:`psnr`: ``10 log10(peak^2 / MSE)``; ``inf`` for a zero MSE (floats). Tensors (training
  logs) floor the MSE at 1e-10 instead, so a perfect batch logs 100 dB rather than ``inf``.
"""

from __future__ import annotations

import math


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    return 8.0 * num_bytes / (height * width)


def psnr(mse, peak: float = 1.0):
    """PSNR in dB of a float MSE or of an MSE tensor (differentiable, per element)."""
    if isinstance(mse, (int, float)):
        return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)
    return 10.0 * (peak * peak / mse.clamp_min(1e-10)).log10()
