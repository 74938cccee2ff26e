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


def test_ms_ssim_agrees_with_float64_reference():
    import torch
    from pytorch_msssim import ms_ssim

    a = _photo()
    b = np.clip(a.astype(int) + 12, 0, 255).astype(np.uint8)
    t = [torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None] for x in (a, b)]
    assert metrics.ms_ssim_rgb(a, b) == pytest.approx(float(ms_ssim(*t, data_range=255)), abs=1e-5)


def test_measure_keys_and_shape_check():
    a = _photo()
    out = metrics.measure(a, a, y_psnr=False)
    assert set(out) == {"psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db"}
    with pytest.raises(ValueError, match="decoded image"):
        metrics.psnr_rgb(a, a[:-1])
