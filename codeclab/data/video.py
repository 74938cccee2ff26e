"""Video files in and out: Y4M (4:2:0, 8-bit), folders of PNG frames, and any container ffmpeg
reads (MP4, MKV, ...; through imageio-ffmpeg's reader).

A clip is a :class:`Clip`: RGB ``uint8 [H, W, 3]`` frames plus what a faithful Y4M output needs
(frame rate, and the range and matrix that map its 4:2:0 samples to RGB). Y4M carries the range
(``XCOLORRANGE``) but no matrix; BT.601 is assumed unless the caller says otherwise. The codec
works on RGB; a Y4M input is converted with :mod:`.colour`, and a Y4M output is converted back
with the same matrix and range.

Bad input (a missing file, a damaged or truncated Y4M, an unsupported chroma format, a size over
the pixel limit) raises :class:`~codeclab.errors.CodecLabError` with one line, before allocating
more than one frame.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CodecLabError
from ..files import write_atomically
from .colour import rgb_to_yuv420, yuv420_to_rgb
from .images import check_pixels

Y4M_MAGIC = b"YUV4MPEG2 "
# Y4M colour tags that mean 8-bit 4:2:0 (they differ only in chroma siting, which is not modelled).
Y4M_420 = ("420jpeg", "420paldv", "420mpeg2", "420")
FFMPEG_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
DEFAULT_FPS = Fraction(25)
MAX_HEADER_BYTES = 1024


@dataclass
class Clip:
    """RGB frames and the description a decoder needs to write them back."""

    frames: list[np.ndarray]
    fps: Fraction = DEFAULT_FPS
    colour_range: str = "limited"
    matrix: str = "bt601"
    source: str = "png"
    extra: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return self.frames[0].shape[0]

    @property
    def width(self) -> int:
        return self.frames[0].shape[1]


def is_video_path(path: Path) -> bool:
    """Whether ``path`` names a video: a Y4M file, an ffmpeg container or a folder of frames."""
    return path.suffix.lower() == ".y4m" or path.suffix.lower() in FFMPEG_SUFFIXES or path.is_dir()


def read_video(path: Path, matrix: str = "bt601", max_frames: int | None = None) -> Clip:
    """Read a clip; ``matrix`` interprets Y4M samples (Y4M does not say)."""
    path = Path(path)
    if not path.exists():
        raise CodecLabError(f"file not found: {path}")
    if path.is_dir():
        return read_png_folder(path, max_frames)
    if path.suffix.lower() == ".y4m":
        return read_y4m(path, matrix, max_frames)
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        return read_with_ffmpeg(path, max_frames)
    raise CodecLabError(f"not a video: {path} (use .y4m, a folder of PNG frames, or {', '.join(sorted(FFMPEG_SUFFIXES))})")


# Y4M ----------------------------------------------------------------------------------------


def _parse_y4m_header(line: bytes, path: Path) -> dict:
    if not line.startswith(Y4M_MAGIC):
        raise CodecLabError(f"not a Y4M file: {path}")
    header = {"C": "420jpeg", "F": "25:1", "X": []}
    for token in line[len(Y4M_MAGIC):].decode("ascii", "replace").split():
        if token[0] == "X":
            header["X"].append(token[1:])
        else:
            header[token[0]] = token[1:]
    try:
        width, height = int(header["W"]), int(header["H"])
        numerator, denominator = (int(v) for v in header["F"].split(":"))
        fps = Fraction(numerator, denominator)
    except (KeyError, ValueError, ZeroDivisionError):
        raise CodecLabError(f"corrupt Y4M header in {path}: {line[:80]!r}") from None
    if width <= 0 or height <= 0 or fps <= 0:
        raise CodecLabError(f"corrupt Y4M header in {path}: size {width}x{height}, {fps} frames per second")
    if header["C"].lower() not in Y4M_420:
        raise CodecLabError(f"unsupported Y4M colour format C{header['C']} in {path} (8-bit 4:2:0 only)")
    check_pixels(height, width, f"a frame of {path}")
    colour_range = "full" if "COLORRANGE=FULL" in [x.upper() for x in header["X"]] else "limited"
    return {"width": width, "height": height, "fps": fps, "range": colour_range, "interlace": header.get("I", "p")}


def split_planes(buffer, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One 8-bit 4:2:0 frame's bytes (Y, then U, then V) as ``(Y [H, W], U, V [ceil(H/2), ceil(W/2)])``."""
    chroma_h, chroma_w = (height + 1) // 2, (width + 1) // 2
    planes = np.frombuffer(buffer, dtype=np.uint8)
    luma, chroma = height * width, chroma_h * chroma_w
    return (planes[:luma].reshape(height, width), planes[luma : luma + chroma].reshape(chroma_h, chroma_w),
            planes[luma + chroma : luma + 2 * chroma].reshape(chroma_h, chroma_w))


def frame_size_420(height: int, width: int) -> int:
    """Bytes of one 8-bit 4:2:0 frame."""
    return height * width + 2 * ((height + 1) // 2) * ((width + 1) // 2)


def read_y4m_planes(path: Path, max_frames: int | None = None) -> tuple[dict, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``(header info, frames)`` of an 8-bit 4:2:0 Y4M file, each frame its raw ``(Y, U, V)`` planes."""
    with open(path, "rb") as handle:
        line = handle.readline(MAX_HEADER_BYTES)
        if not line.endswith(b"\n"):
            raise CodecLabError(f"not a Y4M file: {path}" if not line.startswith(Y4M_MAGIC) else f"corrupt Y4M header in {path}")
        info = _parse_y4m_header(line.rstrip(b"\n"), path)
        width, height = info["width"], info["height"]
        frame_bytes = frame_size_420(height, width)
        frames = []
        while max_frames is None or len(frames) < max_frames:
            marker = handle.readline(MAX_HEADER_BYTES)
            if not marker:
                break
            if not marker.startswith(b"FRAME"):
                raise CodecLabError(f"corrupt Y4M file {path}: frame {len(frames) + 1} has no FRAME marker")
            data = handle.read(frame_bytes)
            if len(data) < frame_bytes:
                raise CodecLabError(f"truncated Y4M file {path}: frame {len(frames) + 1} has {len(data)} of {frame_bytes} bytes")
            frames.append(split_planes(data, height, width))
    if not frames:
        raise CodecLabError(f"Y4M file {path} has no frames")
    return info, frames


def y4m_clip(info: dict, frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]], matrix: str) -> Clip:
    """The RGB clip of :func:`read_y4m_planes`' output, converted with ``matrix`` and the file's range."""
    return Clip([yuv420_to_rgb(*planes, matrix, info["range"]) for planes in frames], info["fps"], info["range"], matrix, "y4m")


def read_y4m(path: Path, matrix: str = "bt601", max_frames: int | None = None) -> Clip:
    """An 8-bit 4:2:0 Y4M file, converted to RGB with ``matrix`` and the file's range."""
    return y4m_clip(*read_y4m_planes(path, max_frames), matrix)


def y4m_bytes(frames_yuv: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fps: Fraction, colour_range: str) -> bytes:
    """A Y4M file of 8-bit 4:2:0 planes ``(Y, U, V)``."""
    height, width = frames_yuv[0][0].shape
    rng = "FULL" if colour_range == "full" else "LIMITED"
    header = f"YUV4MPEG2 W{width} H{height} F{fps.numerator}:{fps.denominator} Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE={rng}\n"
    parts = [header.encode("ascii")]
    for planes in frames_yuv:
        parts.append(b"FRAME\n")
        parts.extend(np.ascontiguousarray(p, dtype=np.uint8).tobytes() for p in planes)
    return b"".join(parts)


def clip_to_yuv420(clip: Clip) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The clip's frames as 8-bit 4:2:0 planes under its own matrix and range."""
    return [rgb_to_yuv420(frame, clip.matrix, clip.colour_range) for frame in clip.frames]


# PNG folders --------------------------------------------------------------------------------


def list_frames(folder: Path) -> list[Path]:
    """The PNG frames of a folder, in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".png")


def read_png_folder(folder: Path, max_frames: int | None = None) -> Clip:
    """A folder of PNG frames (sorted by name; all the same size). No frame rate is stored in
    PNG, so the clip has :data:`DEFAULT_FPS`."""
    paths = list_frames(folder)[:max_frames]
    if not paths:
        raise CodecLabError(f"no PNG frames in {folder}")
    frames = []
    for path in paths:
        try:
            with Image.open(path) as image:
                check_pixels(image.height, image.width, str(path))
                frames.append(np.asarray(image.convert("RGB")))
        except (UnidentifiedImageError, OSError) as err:
            raise CodecLabError(f"cannot read frame {path}: {str(err).splitlines()[0]}") from None
        if frames[-1].shape != frames[0].shape:
            raise CodecLabError(f"frame {path} is {frames[-1].shape[1]}x{frames[-1].shape[0]}, "
                                f"the first frame {frames[0].shape[1]}x{frames[0].shape[0]}")
    return Clip(frames, source="png")


# ffmpeg containers --------------------------------------------------------------------------


def read_with_ffmpeg(path: Path, max_frames: int | None = None) -> Clip:
    """Any container and codec ffmpeg decodes, as RGB frames (ffmpeg's own YUV->RGB conversion)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise CodecLabError("reading this video needs imageio-ffmpeg (pip install imageio-ffmpeg)") from None

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
        check_pixels(height, width, f"a frame of {path}")
        frames = []
        for buffer in reader:
            frames.append(np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3))
            if max_frames is not None and len(frames) >= max_frames:
                reader.close()
                break
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as err:
        raise CodecLabError(f"cannot read video {path}: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
    if not frames:
        raise CodecLabError(f"video {path} has no frames")
    fps = Fraction(meta.get("fps") or DEFAULT_FPS).limit_denominator(1001)
    return Clip(frames, fps, source="ffmpeg")


# Writing ------------------------------------------------------------------------------------


def write_video(path: Path, clip: Clip) -> None:
    """Write ``clip`` as Y4M (``.y4m``) or as a new folder of PNG frames (any other path), atomically."""
    path = Path(path)
    if path.suffix.lower() == ".y4m":
        data = y4m_bytes(clip_to_yuv420(clip), clip.fps, clip.colour_range)
        write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
        return
    if path.suffix:
        raise CodecLabError(f"unknown video output {path.suffix!r}: use .y4m or a folder name (PNG frames)")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CodecLabError(f"output folder {path} exists and is not empty")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    except OSError as err:
        raise CodecLabError(f"cannot write {path}: {err.strerror or type(err).__name__}") from None
    try:
        digits = max(4, len(str(len(clip.frames))))
        for index, frame in enumerate(clip.frames, 1):
            Image.fromarray(frame).save(staging / f"frame_{index:0{digits}d}.png")
        if path.exists():
            path.rmdir()
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def parse_frame_rate(text: str) -> Fraction:
    match = re.fullmatch(r"(\d+)(?::(\d+))?", text)
    if not match or int(match.group(1)) == 0 or (match.group(2) and int(match.group(2)) == 0):
        raise CodecLabError(f"frame rate must be N or N:D, got {text!r}")
    return Fraction(int(match.group(1)), int(match.group(2) or 1))
