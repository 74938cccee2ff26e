"""Image quality metrics on 8-bit decoded images (uint8 HxWx3 RGB arrays).

* RGB PSNR: ``10 log10(255^2 / MSE)`` with the MSE over all pixels and the three channels
  (as CompressAI and tensorflow_compression report "PSNR RGB"). Exact; ``inf`` for identical
  images.
* MS-SSIM: Wang, Simoncelli, Bovik, "Multiscale structural similarity for image quality
  assessment" (2003), 5 scales, 11x11 Gaussian window (sigma 1.5), data range 255, computed per
  channel and averaged over R, G, B -- the ``pytorch_msssim`` implementation that CompressAI's
  evaluation uses. Needs the shorter side > 160 pixels; smaller images get ``nan``.
  ``ms_ssim_db = -10 log10(1 - MS-SSIM)``.
* Y-PSNR: PSNR of full-range BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B`` computed in float
  from the 8-bit RGB (no rounding), peak 255.

Per-set averages are means of per-image values (CompressAI's convention), not PSNR of the
pooled MSE; the two differ by a fraction of a dB on Kodak.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

from ..measures import psnr

MSSSIM_MIN_SIDE = 161  # pytorch_msssim: smaller side must exceed (win_size - 1) * 2**4
_BT601 = np.array([0.299, 0.587, 0.114])


def _check(ref: np.ndarray, dec: np.ndarray) -> None:
    if ref.shape != dec.shape:
        raise ValueError(f"decoded image is {dec.shape}, original is {ref.shape}")


def psnr_rgb(ref: np.ndarray, dec: np.ndarray) -> float:
    """RGB PSNR (dB) of two uint8 images of equal shape."""
    _check(ref, dec)
    diff = ref.astype(np.float64) - dec.astype(np.float64)
    return psnr(float(np.mean(diff * diff)), 255.0)


def psnr_y(ref: np.ndarray, dec: np.ndarray) -> float:
    """PSNR (dB) of full-range BT.601 luma, computed from the 8-bit RGB images."""
    _check(ref, dec)
    diff = (ref.astype(np.float64) - dec.astype(np.float64)) @ _BT601
    return psnr(float(np.mean(diff * diff)), 255.0)


def ms_ssim_rgb(ref: np.ndarray, dec: np.ndarray) -> float:
    """MS-SSIM in [0, 1] (RGB, channel-averaged); ``nan`` if the image is too small."""
    _check(ref, dec)
    if min(ref.shape[:2]) < MSSSIM_MIN_SIDE:
        return math.nan

    def tensor(a: np.ndarray) -> torch.Tensor:
        # float32 like CompressAI: 6x faster than float64 on CPU, agrees to about 1e-6.
        return torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None]

    with torch.no_grad():
        return float(_ms_ssim(tensor(ref), tensor(dec), data_range=255.0, size_average=True))


def to_db(ms_ssim: float) -> float:
    """MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)``."""
    return math.inf if ms_ssim >= 1.0 else -10.0 * math.log10(1.0 - ms_ssim)


def measure(ref: np.ndarray, dec: np.ndarray, y_psnr: bool = True) -> dict[str, float]:
    """All metrics of one decoded image, keyed as in CompressAI's result JSON."""
    m = ms_ssim_rgb(ref, dec)
    out = {"psnr-rgb": psnr_rgb(ref, dec), "ms-ssim-rgb": m, "ms-ssim-rgb-db": to_db(m)}
    if y_psnr:
        out["psnr-y"] = psnr_y(ref, dec)
    return out
