"""The one place that finds ffmpeg: a system ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled
binary (x264 and x265 included), so the video code and the classic codecs run on a machine with
no system ffmpeg. Imports nothing heavy: the classic codecs' worker processes use it."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from .errors import CodecLabError


def ffmpeg_executable() -> str:
    """The ffmpeg binary to run; :class:`CodecLabError` when there is none."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise CodecLabError("ffmpeg is not installed (apt-get install ffmpeg, or pip install imageio-ffmpeg)") from None


@functools.lru_cache(maxsize=None)
def _encoders(executable: str) -> str:
    return subprocess.run([executable, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


def ffmpeg_has(encoder: str) -> bool:
    """Whether the ffmpeg :func:`ffmpeg_executable` finds was built with ``encoder`` (e.g. libx265)."""
    return re.search(rf"\s{re.escape(encoder)}\s", _encoders(ffmpeg_executable())) is not None
