"""RGB <-> Y'CbCr against independent references: scikit-image (BT.601 limited), the published
BT.709 coefficients, and ffmpeg's swscale (every matrix and range) where imageio-ffmpeg is present."""

import subprocess

import numpy as np
import pytest
from skimage.color import rgb2ycbcr

from codeclab.data.colour import (
    MATRICES, downsample_420, rgb_to_ycbcr, rgb_to_yuv420, upsample_420, ycbcr_to_rgb, yuv420_to_rgb,
)


def _image(height=24, width=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_matrix_constants_are_the_standards():
    assert MATRICES == {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def test_bt601_limited_equals_scikit_image():
    image = _image()
    # scikit-image rounds its matrix to 3 decimals of 219 and 224 times the coefficients.
    np.testing.assert_allclose(rgb_to_ycbcr(image, "bt601", "limited"), rgb2ycbcr(image), atol=2e-3)


def test_bt709_rows_are_the_published_coefficients():
    # ITU-R BT.709-6 item 3.2/3.3: Y' = 0.2126 R + 0.7152 G + 0.0722 B; Cb = (B - Y') / 1.8556; Cr = (R - Y') / 1.5748.
    eye = np.eye(3) * 255
    full = rgb_to_ycbcr(eye, "bt709", "full") - [0, 128, 128]
    np.testing.assert_allclose(full[:, 0] / 255, [0.2126, 0.7152, 0.0722], atol=1e-12)
    np.testing.assert_allclose(full[:, 1] / 255, np.array([-0.2126, -0.7152, 0.9278]) / 1.8556, atol=1e-12)
    np.testing.assert_allclose(full[:, 2] / 255, np.array([0.7874, -0.7152, -0.0722]) / 1.5748, atol=1e-12)
    limited = rgb_to_ycbcr(np.array([[0, 0, 0], [255, 255, 255]]), "bt709", "limited")
    np.testing.assert_allclose(limited, [[16, 128, 128], [235, 128, 128]], atol=1e-9)


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("colour_range", ["limited", "full"])
def test_round_trip_is_within_rounding(matrix, colour_range):
    image = _image()
    back = ycbcr_to_rgb(rgb_to_ycbcr(image, matrix, colour_range), matrix, colour_range)
    np.testing.assert_allclose(back, image, atol=1e-9)


def test_420_resampling_geometry():
    plane = np.arange(5 * 7, dtype=np.float64).reshape(5, 7)
    small = downsample_420(plane)
    assert small.shape == (3, 4)
    assert small[0, 0] == plane[:2, :2].mean() and small[2, 3] == plane[4, 6]  # odd edges repeat
    flat = np.full((3, 4), 77.0)
    assert np.all(upsample_420(flat, 5, 7) == 77.0)
    image = _image(17, 33)
    y, u, v = rgb_to_yuv420(image)
    assert y.shape == (17, 33) and u.shape == v.shape == (9, 17)
    assert yuv420_to_rgb(y, u, v).shape == image.shape


ffmpeg = pytest.importorskip("imageio_ffmpeg")


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("colour_range", ["limited", "full"])
def test_agrees_with_ffmpeg_swscale(matrix, colour_range):
    image = _image(32, 48, seed=3)
    command = [ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", "48x32", "-i", "-", "-vf",
               f"scale=out_color_matrix={matrix}:out_range={'tv' if colour_range == 'limited' else 'pc'}"
               ":flags=accurate_rnd+full_chroma_int+full_chroma_inp",
               "-pix_fmt", "yuv444p", "-f", "rawvideo", "-"]
    out = subprocess.run(command, input=image.tobytes(), capture_output=True, check=True).stdout
    reference = np.frombuffer(out, np.uint8).reshape(3, 32, 48).transpose(1, 2, 0).astype(np.float64)
    ours = rgb_to_ycbcr(image, matrix, colour_range)
    assert np.abs(ours - reference).max() <= 1.0  # swscale's fixed-point rounding
    assert np.abs(np.rint(ours) - reference).mean() < 0.1
