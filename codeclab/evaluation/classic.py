"""Classic image codecs run live: each encodes an 8-bit RGB image to real bytes and decodes them.

Every codec is a small picklable object (so a process pool can run it) with a quality
``ladder``; ``available()`` says why a codec cannot run here (missing plugin or tool) so the
evaluation can skip it with a notice, and ``version()`` records the library versions that
produced the numbers.

Measured choices (Kodak, this machine):
* JPEG 2000 through Pillow/OpenJPEG needs ``mct=1`` (the RGB->YCbCr transform); without it PSNR
  drops 3-7 dB at the same rate. Its ladder is in target bpp (Pillow's "rates" are ratios).
* AVIF through Pillow at ``speed=6`` is a reasonable speed/quality trade-off; 4:4:4 by default.
* HEVC-intra 4:4:4 through ffmpeg/libx265 stands in for BPG (which is x265 in 4:4:4 YCbCr): a
  constant QP, every frame intra, full-range BT.601 YCbCr. The byte count is the raw Annex-B
  stream, without BPG's few-byte header. x265's encoder-info SEI (about 1.8 KB of settings
  text, 7% of the rate on Kodak) is switched off, and ``tune=psnr`` turns off psycho-visual
  tuning (10% BD-rate in PSNR on Kodak); preset slow gains another 3% over medium.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import io
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, features

from ..errors import CodecLabError
from ..ffmpeg import ffmpeg_executable, ffmpeg_has

# Pillow format -> (features.version name, library label) for the version record.
_PIL_LIBS = {
    "JPEG": ("jpg", "libjpeg"),
    "WEBP": ("webp", "libwebp"),
    "JPEG2000": ("jpg_2000", "OpenJPEG"),
    "AVIF": ("avif", "libavif"),
}


@dataclass
class Coded:
    """One encode/decode round trip: the real byte count, the decoded image and wall times."""

    nbytes: int
    decoded: np.ndarray
    enc_s: float
    dec_s: float


@dataclass
class ClassicCodec:
    """Base class. ``name`` is the curve name; ``ladder`` the settings, low to high quality."""

    name: str
    ladder: list = field(default_factory=list)

    def available(self) -> str | None:
        """``None`` if the codec can run here, else a one-line reason."""
        return None

    def version(self) -> str:
        raise NotImplementedError

    def encode(self, image: np.ndarray, setting: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def identity(self) -> dict:
        """Everything that determines the output bytes (for the result cache)."""
        return {"class": type(self).__name__, **{k: v for k, v in vars(self).items()
                                                  if k not in ("name", "ladder")},
                "version": self.version()}

    def code(self, image: np.ndarray, setting: Any) -> Coded:
        """Encode then decode ``image`` (uint8 HxWx3), timing each step separately."""
        t0 = time.perf_counter()
        data = self.encode(image, setting)
        t1 = time.perf_counter()
        decoded = self.decode(data, image.shape)
        t2 = time.perf_counter()
        if decoded.shape != image.shape or decoded.dtype != np.uint8:
            raise RuntimeError(f"{self.name}: decoded {decoded.shape} {decoded.dtype}, "
                               f"expected {image.shape} uint8")
        return Coded(len(data), decoded, t1 - t0, t2 - t1)


@dataclass
class PillowCodec(ClassicCodec):
    """A codec reached through Pillow's ``Image.save(format=...)``.

    ``setting_param`` is the save() keyword the ladder value goes into (e.g. ``quality``);
    ``params`` are fixed save() keywords; ``plugin`` is a module to import first that registers
    the format (e.g. ``pillow_jxl``); ``package`` the distribution whose version to record.
    """

    format: str = "JPEG"
    setting_param: str = "quality"
    params: dict = field(default_factory=dict)
    plugin: str | None = None
    package: str | None = None

    def _register(self) -> None:
        if self.plugin:
            importlib.import_module(self.plugin)

    def available(self) -> str | None:
        try:
            self._register()
        except ImportError:
            return f"Python package {self.package or self.plugin} is not installed"
        Image.init()  # Pillow fills its format registry lazily
        if self.format not in Image.SAVE:
            return f"this Pillow build cannot write {self.format}"
        return None

    def version(self) -> str:
        parts = [f"Pillow {Image.__version__}"]
        if self.format in _PIL_LIBS:
            feature, label = _PIL_LIBS[self.format]
            if self.format == "JPEG" and features.check_feature("libjpeg_turbo"):
                feature, label = "libjpeg_turbo", "libjpeg-turbo"
            parts.append(f"{label} {features.version(feature)}")
        if self.package:
            parts.append(f"{self.package} {importlib.metadata.version(self.package)}")
        return ", ".join(parts)

    def _save_kwargs(self, setting: Any) -> dict:
        return {**self.params, self.setting_param: setting}

    def encode(self, image: np.ndarray, setting: Any) -> bytes:
        self._register()
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=self.format, **self._save_kwargs(setting))
        return buf.getvalue()

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        self._register()
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


@dataclass
class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (OpenJPEG through Pillow). Ladder values are target bpp; Pillow takes the
    compression ratio ``24 / bpp`` (one quality layer, irreversible 9/7 wavelet)."""

    format: str = "JPEG2000"
    setting_param: str = "quality_layers"

    def _save_kwargs(self, setting: Any) -> dict:
        return {"quality_mode": "rates", **self.params, "quality_layers": [24.0 / float(setting)]}


def _run(cmd: list[str], data: bytes) -> bytes:
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"ffmpeg failed: {tail[0]}")
    return proc.stdout


@dataclass
class FFmpegHEVC(ClassicCodec):
    """HEVC intra through ffmpeg + libx265 at a constant QP (ladder: QPs, high to low).

    RGB is converted to full-range BT.601 YCbCr 4:4:4 (as BPG does by default) with accurate
    rounding, coded as one intra frame, and converted back to 8-bit RGB by ffmpeg.
    """

    preset: str = "medium"
    tune: str | None = "psnr"
    pix_fmt: str = "yuv444p"
    _SCALE = "accurate_rnd+full_chroma_int+full_chroma_inp"

    def available(self) -> str | None:
        try:
            ffmpeg_executable()
        except CodecLabError as err:
            return str(err)
        if not ffmpeg_has("libx265"):
            return "this ffmpeg has no libx265 encoder"
        return None

    @functools.cached_property
    def _versions(self) -> str:
        ff = subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True).stdout
        ff_ver = ff.split()[2] if ff.startswith("ffmpeg version") else "?"
        # x265 prints its version only while encoding: code a tiny frame at info level.
        tiny = np.zeros((16, 16, 3), np.uint8)
        probe = subprocess.run(self._encode_cmd(16, 16, 40, "info"), input=tiny.tobytes(),
                               capture_output=True)
        m = re.search(r"HEVC encoder version (\S+)", probe.stderr.decode(errors="replace"))
        return f"ffmpeg {ff_ver}, x265 {m.group(1) if m else '?'}"

    def version(self) -> str:
        return self._versions

    def identity(self) -> dict:
        return {"class": type(self).__name__, "preset": self.preset, "tune": self.tune,
                "pix_fmt": self.pix_fmt, "x265": "info=0", "version": self.version()}

    def _encode_cmd(self, w: int, h: int, qp: int, log: str = "error") -> list[str]:
        return [
            ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{w}x{h}", "-i", "-",
            "-vf", f"scale=out_color_matrix=bt601:out_range=full:flags={self._SCALE}",
            "-pix_fmt", self.pix_fmt, "-c:v", "libx265", "-preset", self.preset,
            *(["-tune", self.tune] if self.tune else []),
            # info=0: no SEI with the encoder's settings text, which is not image data.
            "-x265-params", f"qp={int(qp)}:keyint=1:info=0:log-level={log}",
            "-frames:v", "1", "-f", "hevc", "-",
        ]

    def encode(self, image: np.ndarray, setting: Any) -> bytes:
        h, w = image.shape[:2]
        return _run(self._encode_cmd(w, h, setting), np.ascontiguousarray(image).tobytes())

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        raw = _run([ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-f", "hevc", "-i", "-",
                    "-vf", f"scale=in_color_matrix=bt601:in_range=full:flags={self._SCALE}",
                    "-pix_fmt", "rgb24", "-f", "rawvideo", "-"], data)
        return np.frombuffer(raw, np.uint8).reshape(shape).copy()


@dataclass
class PostFiltered(ClassicCodec):
    """``codec`` with a post-filter (a network file, :mod:`codeclab.postfilters`) on its decoded
    images; the decoding time includes the filter's."""

    codec: ClassicCodec | None = None
    postfilter: str = ""
    postfilter_sha256: str = ""

    def __post_init__(self):
        self.ladder = list(self.codec.ladder)
        self.postfilter_sha256 = self.postfilter_sha256 or hashlib.sha256(Path(self.postfilter).read_bytes()).hexdigest()
        self._network = None

    def available(self) -> str | None:
        return self.codec.available()

    def version(self) -> str:
        return f"{self.codec.version()} + post-filter {self.postfilter_sha256[:12]}"

    def identity(self) -> dict:
        return {"class": "PostFiltered", "codec": self.codec.identity(), "postfilter_sha256": self.postfilter_sha256,
                "version": self.version()}

    def encode(self, image: np.ndarray, setting: Any) -> bytes:
        return self.codec.encode(image, setting)

    def decode(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        if self._network is None:  # loaded once per process (the pool's workers included)
            from codeclab.formats.network_file import load_postfilter

            self._network = load_postfilter(self.postfilter)
        return self._network.enhance(self.codec.decode(data, shape)).image

    def __getstate__(self):
        return {**vars(self), "_network": None}
