"""Quality metrics on 8-bit images."""

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from codeclab.evaluation import metrics


def _photo(h=192, w=200, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def test_psnr_known_values():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a + np.uint8(1)  # MSE 1 -> 20 log10(255)
    assert metrics.psnr_rgb(a, b) == pytest.approx(20 * math.log10(255))
    assert metrics.psnr_rgb(a, a) == math.inf


def test_psnr_matches_scikit_image():
    a, b = _photo(seed=1), _photo(seed=2)
    assert metrics.psnr_rgb(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))


def test_y_psnr_uses_bt601_luma_weights():
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[..., 2] += 10  # blue only: luma error 0.114 * 10
    assert metrics.psnr_y(a, b) == pytest.approx(10 * math.log10(255**2 / (1.14**2)))
    assert metrics.psnr_rgb(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 3)))


def test_ms_ssim_range_db_and_small_images():
    a = _photo()
    noisy = np.clip(a + np.random.default_rng(3).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim_rgb(a, a) == pytest.approx(1.0, abs=1e-6)
    m = metrics.ms_ssim_rgb(a, noisy)
    assert 0.5 < m < 0.999
    assert metrics.to_db(m) == pytest.approx(-10 * math.log10(1 - m))
    assert math.isnan(metrics.ms_ssim_rgb(a[:100], noisy[:100]))  # below pytorch_msssim's minimum


def _ms_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM written out from Wang, Simoncelli & Bovik 2003 with numpy/scipy: an 11-tap Gaussian
    window (sigma 1.5, 'valid'), K1 = 0.01, K2 = 0.03, 5 scales weighted (0.0448, 0.2856, 0.3001,
    0.2363, 0.1333), 2x2 average downsampling; contrast-structure at every scale, luminance at the
    coarsest; per RGB channel, then averaged."""
    from scipy.signal import convolve2d

    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(taps, taps) / taps.sum() ** 2
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filtered(x):
        return convolve2d(x, window, mode="valid")

    values = []
    for channel in range(3):
        x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
        factors = []
        for scale in range(5):
            mx, my = filtered(x), filtered(y)
            vx, vy, cov = filtered(x * x) - mx**2, filtered(y * y) - my**2, filtered(x * y) - mx * my
            cs = ((2 * cov + c2) / (vx + vy + c2)).mean()
            luminance = ((2 * mx * my + c1) / (mx**2 + my**2 + c1) * (2 * cov + c2) / (vx + vy + c2)).mean()
            factors.append(max(luminance if scale == 4 else cs, 0.0) ** weights[scale])
            if scale < 4:  # average 2x2 blocks (pad odd sides as avg_pool2d(padding=side % 2) does)
                x, y = (np.pad(t, [(0, t.shape[0] % 2), (0, t.shape[1] % 2)], mode="edge") for t in (x, y))
                x, y = (t.reshape(t.shape[0] // 2, 2, t.shape[1] // 2, 2).mean((1, 3)) for t in (x, y))
        values.append(np.prod(factors))
    return float(np.mean(values))


def test_ms_ssim_agrees_with_an_independent_implementation():
    a = _photo(h=192, w=192)  # even sides at every scale: no padding convention involved
    for b in (np.clip(a.astype(int) + 12, 0, 255).astype(np.uint8), _photo(h=192, w=192, seed=5)):
        assert metrics.ms_ssim_rgb(a, b) == pytest.approx(_ms_ssim_reference(a, b), abs=2e-4)


def test_measure_keys_and_shape_check():
    a = _photo()
    out = metrics.measure(a, a, y_psnr=False)
    assert set(out) == {"psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db"}
    with pytest.raises(ValueError, match="decoded image"):
        metrics.psnr_rgb(a, a[:-1])
