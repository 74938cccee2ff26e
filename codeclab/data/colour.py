"""RGB <-> Y'CbCr (BT.601 and BT.709, limited and full range) and 4:2:0 chroma resampling.

Conversions follow the matrices of ITU-R BT.601 and BT.709 (``Kr, Kb`` = 0.299, 0.114 and
0.2126, 0.0722) on 8-bit code values::

    Y' = Kr R + (1 - Kr - Kb) G + Kb B,   Cb = (B - Y') / (2 (1 - Kb)),   Cr = (R - Y') / (2 (1 - Kr))
    full range:     Y = Y',              C = 128 + C'
    limited range:  Y = 16 + 219/255 Y', C = 128 + 224/255 C'

4:2:0 uses centred chroma siting (Y4M ``C420jpeg``): a chroma sample is the mean of its 2x2 luma
block (edge samples repeated for odd sizes), and upsampling is bilinear with the same phase.
Everything is float64 until the final rounding to 8 bits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
RANGES = ("limited", "full")


def _check(matrix: str, colour_range: str) -> tuple[float, float]:
    if matrix not in MATRICES or colour_range not in RANGES:
        raise ValueError(f"matrix must be one of {', '.join(MATRICES)} and range one of {', '.join(RANGES)}; "
                         f"got {matrix!r}, {colour_range!r}")
    return MATRICES[matrix]


def rgb_to_ycbcr(rgb: np.ndarray, matrix: str = "bt601", colour_range: str = "limited") -> np.ndarray:
    """``[..., 3]`` RGB code values (0..255) -> float64 ``[..., 3]`` Y, Cb, Cr code values (not rounded)."""
    kr, kb = _check(matrix, colour_range)
    r, g, b = (np.asarray(rgb, dtype=np.float64)[..., k] for k in range(3))
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    if colour_range == "limited":
        y, cb, cr = 16 + y * 219 / 255, cb * 224 / 255, cr * 224 / 255
    return np.stack([y, cb + 128, cr + 128], axis=-1)


def ycbcr_to_rgb(ycbcr: np.ndarray, matrix: str = "bt601", colour_range: str = "limited") -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: float64 RGB code values (not rounded or clipped)."""
    kr, kb = _check(matrix, colour_range)
    ycbcr = np.asarray(ycbcr, dtype=np.float64)
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1] - 128, ycbcr[..., 2] - 128
    if colour_range == "limited":
        y, cb, cr = (y - 16) * 255 / 219, cb * 255 / 224, cr * 255 / 224
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return np.stack([r, g, b], axis=-1)


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def downsample_420(plane: np.ndarray) -> np.ndarray:
    """A full-resolution chroma plane ``[H, W]`` -> ``[ceil(H/2), ceil(W/2)]`` (2x2 means, float64)."""
    plane = np.asarray(plane, dtype=np.float64)
    h, w = plane.shape
    plane = np.pad(plane, ((0, h % 2), (0, w % 2)), mode="edge")
    return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean(axis=(1, 3))


def upsample_420(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 4:2:0 chroma plane -> ``[height, width]`` (bilinear, centred siting, edges repeated), float64."""
    tensor = torch.from_numpy(np.asarray(plane, dtype=np.float64))[None, None]
    up = F.interpolate(tensor, scale_factor=2, mode="bilinear", align_corners=False)
    return up[0, 0, :height, :width].numpy()


def rgb_to_yuv420(rgb: np.ndarray, matrix: str = "bt601", colour_range: str = "limited") -> tuple[np.ndarray, ...]:
    """``uint8 [H, W, 3]`` RGB -> 8-bit planes ``(Y [H, W], U, V [ceil(H/2), ceil(W/2)])``."""
    ycbcr = rgb_to_ycbcr(rgb, matrix, colour_range)
    return to_uint8(ycbcr[..., 0]), to_uint8(downsample_420(ycbcr[..., 1])), to_uint8(downsample_420(ycbcr[..., 2]))


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = "bt601",
                  colour_range: str = "limited") -> np.ndarray:
    """8-bit 4:2:0 planes -> ``uint8 [H, W, 3]`` RGB."""
    height, width = y.shape
    ycbcr = np.stack([y.astype(np.float64), upsample_420(u, height, width), upsample_420(v, height, width)], axis=-1)
    return to_uint8(ycbcr_to_rgb(ycbcr, matrix, colour_range))
