"""RBQE's blind quality-assessment module (IQAM): is an enhanced image good enough to stop?

Xing et al., "Early Exit or Not" (ECCV 2020), as the official MATLAB code (ryanxingql/rbqe:
``cal_QualityScore.m``, ``TchebiFocus.m``, ``TchebichefPoly.m``, ``Rho.m``), on the 8-bit Y plane:

1. Patches of N x N (N = 8 for JPEG, 4 for HEVC: the coding block), non-overlapping, offset by
   N/2 so that every block boundary runs through a patch centre: ``floor(H/N) - 1`` per side.
2. Tchebichef moments ``M = P I P^T`` (``P`` the orthonormal Tchebichef polynomials of order
   N-1) of the patch scaled to unit energy and made zero-mean; ``SSM = sum(M^2) - M00^2``.
3. Textured patches (``SSM > 0.004``) measure blur: the moments ``Mb`` of the patch blurred by a
   3x3 Gaussian (sigma 5, zero padding), ``S = (2 M Mb + C) / (M^2 + Mb^2 + C)``, score ``1 - mean(S)``.
   Smooth patches measure blocking: the share of the highest-order row and column moments,
   ``Q = min(sum|M[N-1,:]| / D, 0.05)`` (and the column), ``D = sum|M| - |M00| + C``, score
   ``ln(1 - (Qh + Qw) / 2) / ln(1 - 0.05)``.
4. ``score = mean(blocking)^0.9 * mean(blur)^0.1`` (a missing class counts 1); higher is better.
   The official scripts print it with two decimals and exit when ``score >= T``.

Exact: the arithmetic is float64 numpy, vectorised over patches (the MATLAB loops patch by patch).
A flat patch has no structure above its mean, so its blocking score is 0 (the worst), as in
MATLAB. Where MATLAB would give NaN for the whole image (an all-black patch has no energy to
normalise), the patch scores 1, as in the author's later Python port (PowerQE's IQAM).
"""

from __future__ import annotations

import math

import numpy as np

SMOOTH_THRESHOLD = 0.004  # thr: SSM at or below it is a smooth patch
JND_CLIP = 0.05  # T: the highest-order share is clipped here
STABILITY = 1e-5  # C
BLOCK_WEIGHT, BLUR_WEIGHT = 0.9, 0.1  # exponents of the two sub-scores
GAUSSIAN_SIZE, GAUSSIAN_SIGMA = 3, 5.0
PATCH_SIZE = {"jpeg": 8, "hevc": 4}  # the codec's block size


def tchebichef_basis(n: int) -> np.ndarray:
    """``[n, n]`` orthonormal Tchebichef polynomials ``P[p, x]``, p = 0..n-1 (``TchebichefPoly.m``, ``Rho.m``)."""
    x = np.arange(n, dtype=np.float64)
    poly = np.zeros((n, n))
    poly[0] = 1.0
    if n > 1:
        poly[1] = (1 - n + 2 * x) / n
    for p in range(2, n):
        poly[p] = ((2 * p - 1) * poly[1] * poly[p - 1] - (p - 1) * (1 - (p - 1) ** 2 / n**2) * poly[p - 2]) / p
    rho = np.ones(n)
    for p in range(1, n):
        rho[p] = rho[p - 1] * (1 - p**2 / n**2)
    rho *= n / (2 * np.arange(n) + 1)
    return poly / np.sqrt(rho)[:, None]


def gaussian_kernel() -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', 3, 5)``."""
    r = np.arange(GAUSSIAN_SIZE) - (GAUSSIAN_SIZE - 1) / 2
    kernel = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * GAUSSIAN_SIGMA**2))
    return kernel / kernel.sum()


def _moments(patches: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Moments of ``[K, N, N]`` patches: unit energy, zero mean, ``P I P^T`` (``TchebiFocus.m``)."""
    n = patches.shape[-1]
    energy = np.sqrt(n * n * np.mean(patches**2, axis=(1, 2), keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = patches / energy
    unit = unit - unit.mean(axis=(1, 2), keepdims=True)
    return basis @ unit @ basis.T


def _blur(patches: np.ndarray) -> np.ndarray:
    """``imfilter(patch, gaussian, 'same')``: correlation with zero padding."""
    kernel, pad = gaussian_kernel(), GAUSSIAN_SIZE // 2
    padded = np.pad(patches, ((0, 0), (pad, pad), (pad, pad)))
    n = patches.shape[-1]
    out = np.zeros_like(patches)
    for dy in range(GAUSSIAN_SIZE):
        for dx in range(GAUSSIAN_SIZE):
            out += kernel[dy, dx] * padded[:, dy : dy + n, dx : dx + n]
    return out


def patches_of(y: np.ndarray, n: int) -> np.ndarray:
    """The half-block-offset ``[K, n, n]`` patches of an ``[H, W]`` plane in [0, 1]."""
    rows, cols = y.shape[0] // n - 1, y.shape[1] // n - 1
    if rows < 1 or cols < 1:
        raise ValueError(f"the image ({y.shape[1]}x{y.shape[0]}) is smaller than two {n}x{n} blocks per side")
    start = n // 2
    grid = y[start : start + rows * n, start : start + cols * n]
    return grid.reshape(rows, n, cols, n).transpose(0, 2, 1, 3).reshape(-1, n, n)


def quality_score(y: np.ndarray, codec_type: str = "jpeg") -> float:
    """The IQAM score of an 8-bit Y plane ``[H, W]`` (uint8), in [0, 1], higher is better."""
    if codec_type not in PATCH_SIZE:
        raise ValueError(f"codec_type must be one of {', '.join(PATCH_SIZE)}, got {codec_type!r}")
    n = PATCH_SIZE[codec_type]
    patches = patches_of(np.asarray(y, dtype=np.float64) / 255.0, n)
    basis = tchebichef_basis(n)
    moments = _moments(patches, basis)
    ssm = np.sum(moments**2, axis=(1, 2)) - moments[:, 0, 0] ** 2
    textured = ssm > SMOOTH_THRESHOLD  # NaN (no energy) compares False: smooth
    blur_scores = np.empty(0)
    if textured.any():
        m = moments[textured]
        mb = _moments(_blur(patches[textured]), basis)
        similarity = (2 * m * mb + STABILITY) / (m**2 + mb**2 + STABILITY)
        blur_scores = 1 - similarity.mean(axis=(1, 2))
    smooth = moments[~textured]
    with np.errstate(invalid="ignore"):
        d = np.abs(smooth).sum(axis=(1, 2)) - np.abs(smooth[:, 0, 0]) + STABILITY
        q_h = np.minimum(np.abs(smooth[:, n - 1, :]).sum(axis=1) / d, JND_CLIP)
        q_w = np.minimum(np.abs(smooth[:, :, n - 1]).sum(axis=1) / d, JND_CLIP)
        block_scores = np.log(1 - (q_h + q_w) / 2) / math.log(1 - JND_CLIP)
    block_scores = np.where(np.isnan(block_scores), 1.0, block_scores)
    s_block = float(block_scores.mean()) if block_scores.size else 1.0
    s_blur = float(blur_scores.mean()) if blur_scores.size else 1.0
    return s_block**BLOCK_WEIGHT * s_blur**BLUR_WEIGHT
