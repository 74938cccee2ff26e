"""Classic codecs: real bytes out, decoded 8-bit image back, versions recorded, skipped cleanly."""

import numpy as np
import pytest

from codeclab.evaluation import metrics
from codeclab.evaluation.classic import FFmpegHEVC, Jpeg2000Codec, PillowCodec
from codeclab.evaluation.runner import EvalImage, evaluate


def _image(h=72, w=97):  # odd sizes on purpose (not multiples of 8 or 64)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 2.5, y * 3.0, 128 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


CODECS = [
    (PillowCodec("JPEG", format="JPEG", params={"subsampling": "4:2:0"}), (20, 90)),
    (PillowCodec("WebP", format="WEBP", params={"method": 4}), (20, 90)),
    (Jpeg2000Codec("JPEG 2000", params={"mct": 1, "irreversible": True, "no_jp2": True}),
     (0.5, 3.0)),
    (PillowCodec("AVIF", format="AVIF", params={"speed": 8, "subsampling": "4:4:4"}), (30, 90)),
    (PillowCodec("JPEG XL", format="JXL", params={"effort": 3}, plugin="pillow_jxl",
                 package="pillow-jxl-plugin"), (30, 90)),
    (FFmpegHEVC("HEVC", preset="ultrafast"), (40, 24)),
]


@pytest.mark.parametrize("codec, settings", CODECS, ids=[c.name for c, _ in CODECS])
def test_round_trip_real_bytes(codec, settings):
    if codec.available():
        pytest.skip(codec.available())
    img = _image()
    low, high = (codec.code(img, s) for s in settings)
    for coded in (low, high):
        assert coded.decoded.shape == img.shape and coded.decoded.dtype == np.uint8
        assert coded.enc_s > 0 and coded.dec_s > 0
    assert low.nbytes == len(codec.encode(img, settings[0]))  # the real file size
    # Higher quality costs more bytes and gives a closer image.
    assert high.nbytes > low.nbytes
    assert metrics.psnr_rgb(img, high.decoded) > metrics.psnr_rgb(img, low.decoded) > 20
    assert codec.version() and codec.identity()["version"] == codec.version()


def test_jpeg2000_ladder_is_target_bpp():
    codec = CODECS[2][0]
    if codec.available():
        pytest.skip(codec.available())
    img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)  # needs bits
    coded = codec.code(img, 1.0)
    assert coded.nbytes * 8 / (128 * 128) == pytest.approx(1.0, rel=0.1)


def _no_ffmpeg_anywhere(monkeypatch):
    """PATH without ffmpeg and imageio-ffmpeg's binary gone too."""
    import imageio_ffmpeg

    monkeypatch.setattr("codeclab.ffmpeg.shutil.which", lambda name: None)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: (_ for _ in ()).throw(RuntimeError("no ffmpeg")))


def test_hevc_runs_on_the_bundled_ffmpeg_without_a_system_one(tmp_path, monkeypatch):
    """No ffmpeg on PATH: HEVC-intra falls back to imageio-ffmpeg's binary (libx265 included)."""
    import shutil

    pytest.importorskip("imageio_ffmpeg")
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    assert shutil.which("ffmpeg") is None
    hevc = FFmpegHEVC("HEVC", preset="ultrafast", ladder=[30])
    assert hevc.available() is None
    coded = hevc.code(_image(), 30)
    assert coded.nbytes > 0 and metrics.psnr_rgb(_image(), coded.decoded) > 30
    assert hevc.version().startswith("ffmpeg ") and "x265 ?" not in hevc.version()


def test_missing_tools_are_skipped_with_a_notice(monkeypatch):
    _no_ffmpeg_anywhere(monkeypatch)
    hevc = FFmpegHEVC("HEVC", ladder=[30])
    jxl = PillowCodec("JXL", ladder=[50], format="JXL", plugin="no_such_plugin_xyz",
                      package="no-such-plugin")
    assert "ffmpeg is not installed" in hevc.available()
    assert "no-such-plugin is not installed" in jxl.available()
    notices = []
    out = evaluate([EvalImage("a", _image())], [hevc, jxl], workers=1, progress=False,
                   log=notices.append)
    assert out == [] and len(notices) == 2 and all("skipping" in n for n in notices)
