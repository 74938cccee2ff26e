"""Video files in and out: Y4M (4:2:0, 8-bit), folders of PNG frames, and any container ffmpeg
reads (MP4, MKV, ...; through imageio-ffmpeg's reader).

A clip is a :class:`Clip`: RGB ``uint8 [H, W, 3]`` frames plus what a faithful Y4M output needs
(frame rate, and the range and matrix that map its 4:2:0 samples to RGB). Y4M carries the range
(``XCOLORRANGE``) but no matrix; BT.601 is assumed unless the caller says otherwise. The codec
works on RGB; a Y4M input is converted with :mod:`.colour`, and a Y4M output is converted back
with the same matrix and range.

Bad input (a missing file, a damaged or truncated Y4M, an unsupported chroma format, a size over
the pixel limit) raises :class:`~codeclab.errors.CodecLabError` with one line, before allocating
more than one frame. :func:`open_video` reads frames as they are consumed (a :class:`VideoStream`),
so coding a long video holds one frame at a time; :func:`read_video` holds them all (a :class:`Clip`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CodecLabError
from ..files import check_input, write_atomically, write_folder_atomically
from .colour import rgb_to_yuv420, yuv420_to_rgb
from .images import check_pixels
from .images import stderr_notice as notice

Y4M_MAGIC = b"YUV4MPEG2 "
# Y4M colour tags that mean 8-bit 4:2:0 (they differ only in chroma siting, which is not modelled).
Y4M_420 = ("420jpeg", "420paldv", "420mpeg2", "420")
FFMPEG_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
DEFAULT_FPS = Fraction(25)
MAX_HEADER_BYTES = 1024


@dataclass
class Clip:
    """RGB frames in memory and the description a decoder needs to write them back."""

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

    @property
    def count(self) -> int:
        return len(self.frames)


@dataclass
class VideoStream:
    """A video read (or decoded) one frame at a time, so memory does not grow with its length:
    the :class:`Clip` description, the frame size known before any frame is read, and an
    iterator of RGB frames to be consumed once. Coding and writing take either kind."""

    frames: Iterator[np.ndarray]
    width: int
    height: int
    count: int | None  # frames to come, when known before reading them
    fps: Fraction = DEFAULT_FPS
    colour_range: str = "limited"
    matrix: str = "bt601"
    source: str = "png"

    def clip(self) -> Clip:
        """Every frame read into memory."""
        return Clip(list(self.frames), self.fps, self.colour_range, self.matrix, self.source)


def is_video_path(path: Path) -> bool:
    """Whether ``path`` names a video: a Y4M file, an ffmpeg container or a folder of frames."""
    return path.suffix.lower() == ".y4m" or path.suffix.lower() in FFMPEG_SUFFIXES or path.is_dir()


def open_video(path: Path, matrix: str = "bt601", max_frames: int | None = None) -> VideoStream:
    """A video's frames, read as they are consumed; ``matrix`` interprets Y4M samples (Y4M does
    not say). The header (and, for Y4M, every frame marker) is checked here, before any frame is read."""
    path = check_input(path, folder=True)
    if path.is_dir():
        return open_png_folder(path, max_frames)
    if path.suffix.lower() == ".y4m":
        return open_y4m(path, matrix, max_frames)
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        return open_with_ffmpeg(path, max_frames)
    raise CodecLabError(f"not a video: {path} (use .y4m, a folder of PNG frames, or {', '.join(sorted(FFMPEG_SUFFIXES))})")


def read_video(path: Path, matrix: str = "bt601", max_frames: int | None = None) -> Clip:
    """Every frame of a video in memory (see :func:`open_video`)."""
    return open_video(path, matrix, max_frames).clip()


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


def _y4m_frame_start(handle, path: Path, index: int, frame_bytes: int) -> bool:
    """Read frame ``index``'s FRAME marker: ``False`` at the end of the file; checks that its
    ``frame_bytes`` follow, without reading them."""
    marker = handle.readline(MAX_HEADER_BYTES)
    if not marker:
        return False
    if marker != b"FRAME\n" and not marker.startswith(b"FRAME "):  # FRAME, then parameters or the end of the line
        raise CodecLabError(f"corrupt Y4M file {path}: frame {index + 1} has no FRAME marker")
    present = os.fstat(handle.fileno()).st_size - handle.tell()
    if present < frame_bytes:
        raise CodecLabError(f"truncated Y4M file {path}: frame {index + 1} has {present} of {frame_bytes} bytes")
    return True


def y4m_planes(path: Path, max_frames: int | None = None) -> tuple[dict, int, Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``(header info, frame count, frames)`` of an 8-bit 4:2:0 Y4M file, each frame its raw
    ``(Y, U, V)`` planes, read as the iterator is consumed. The header and every frame marker are
    checked first (seeking past the samples), so a damaged or truncated file fails here."""
    path = check_input(path)
    with open(path, "rb") as handle:
        line = handle.readline(MAX_HEADER_BYTES)
        if not line.endswith(b"\n"):
            raise CodecLabError(f"not a Y4M file: {path}" if not line.startswith(Y4M_MAGIC) else f"corrupt Y4M header in {path}")
        info = _parse_y4m_header(line.rstrip(b"\n"), path)
        height, width = info["height"], info["width"]
        frame_bytes, first = frame_size_420(height, width), handle.tell()
        count = 0
        while (max_frames is None or count < max_frames) and _y4m_frame_start(handle, path, count, frame_bytes):
            handle.seek(frame_bytes, os.SEEK_CUR)
            count += 1
    if not count:
        raise CodecLabError(f"Y4M file {path} has no frames")

    def frames():
        with open(path, "rb") as handle:
            handle.seek(first)
            for index in range(count):
                data = handle.read(frame_bytes) if _y4m_frame_start(handle, path, index, frame_bytes) else b""
                if len(data) < frame_bytes:  # the file changed since it was checked
                    raise CodecLabError(f"truncated Y4M file {path}: frame {index + 1} has {len(data)} of {frame_bytes} bytes")
                yield split_planes(data, height, width)

    return info, count, frames()


def read_y4m_planes(path: Path, max_frames: int | None = None) -> tuple[dict, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``(header info, frames)`` of :func:`y4m_planes`, every frame in memory."""
    info, _, frames = y4m_planes(path, max_frames)
    return info, list(frames)


def y4m_clip(info: dict, frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]], matrix: str) -> Clip:
    """The RGB clip of :func:`read_y4m_planes`' output, converted with ``matrix`` and the file's range."""
    return Clip([yuv420_to_rgb(*planes, matrix, info["range"]) for planes in frames], info["fps"], info["range"], matrix, "y4m")


def open_y4m(path: Path, matrix: str = "bt601", max_frames: int | None = None) -> VideoStream:
    """An 8-bit 4:2:0 Y4M file, converted to RGB with ``matrix`` and the file's range frame by frame."""
    info, count, planes = y4m_planes(path, max_frames)
    if info["interlace"] not in ("p", "?"):
        notice(f"{path.name}: interlaced frames (I{info['interlace']}) are coded as progressive pictures, both fields "
               "together; a decoded Y4M says progressive")
    frames = (yuv420_to_rgb(*frame, matrix, info["range"]) for frame in planes)
    return VideoStream(frames, info["width"], info["height"], count, info["fps"], info["range"], matrix, "y4m")


def y4m_header(width: int, height: int, fps: Fraction, colour_range: str) -> bytes:
    """The stream header of an 8-bit 4:2:0 Y4M file."""
    rng = "FULL" if colour_range == "full" else "LIMITED"
    return f"YUV4MPEG2 W{width} H{height} F{fps.numerator}:{fps.denominator} Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE={rng}\n".encode("ascii")


def y4m_frame(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bytes:
    """One Y4M frame: the marker and the 8-bit ``(Y, U, V)`` planes."""
    return b"FRAME\n" + b"".join(np.ascontiguousarray(p, dtype=np.uint8).tobytes() for p in planes)


def y4m_bytes(frames_yuv: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fps: Fraction, colour_range: str) -> bytes:
    """A Y4M file of 8-bit 4:2:0 planes ``(Y, U, V)``."""
    height, width = frames_yuv[0][0].shape
    return y4m_header(width, height, fps, colour_range) + b"".join(map(y4m_frame, frames_yuv))


def clip_to_yuv420(clip: Clip) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The clip's frames as 8-bit 4:2:0 planes under its own matrix and range."""
    return [rgb_to_yuv420(frame, clip.matrix, clip.colour_range) for frame in clip.frames]


# PNG folders --------------------------------------------------------------------------------


def list_frames(folder: Path) -> list[Path]:
    """The PNG frames of a folder, in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".png")


def _png_frame(path: Path, size: tuple[int, int] | None) -> np.ndarray | tuple[int, int]:
    """Frame ``path`` as RGB, checked to be ``size`` (height, width); with ``size`` None, only
    its size, read from the header."""
    try:
        with Image.open(check_input(path, "frame")) as image:
            check_pixels(image.height, image.width, str(path))
            if size is None:
                return image.height, image.width
            if (image.height, image.width) != size:
                raise CodecLabError(f"frame {path} is {image.width}x{image.height}, the first frame {size[1]}x{size[0]}")
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise CodecLabError(f"cannot read frame {path}: {str(err).splitlines()[0]}") from None


def open_png_folder(folder: Path, max_frames: int | None = None) -> VideoStream:
    """A folder of PNG frames (sorted by name; all the same size, checked as they are read). No
    frame rate is stored in PNG, so the video has :data:`DEFAULT_FPS`."""
    paths = list_frames(folder)[:max_frames]
    if not paths:
        raise CodecLabError(f"no PNG frames in {folder}")
    height, width = _png_frame(paths[0], None)
    frames = (_png_frame(path, (height, width)) for path in paths)
    return VideoStream(frames, width, height, len(paths), source="png")


def read_png_folder(folder: Path, max_frames: int | None = None) -> Clip:
    """Every frame of :func:`open_png_folder` in memory."""
    return open_png_folder(folder, max_frames).clip()


# ffmpeg containers --------------------------------------------------------------------------


def _ffmpeg_error(path: Path, err: Exception) -> CodecLabError:
    text = str(err).strip()
    return CodecLabError(f"cannot read video {path}: {text.splitlines()[0] if text else type(err).__name__}")


_FFMPEG_ERRORS = (OSError, RuntimeError, StopIteration, KeyError, ValueError)


def open_with_ffmpeg(path: Path, max_frames: int | None = None) -> VideoStream:
    """Any container and codec ffmpeg decodes, as RGB frames (ffmpeg's own YUV->RGB conversion),
    decoded by an ffmpeg process as they are consumed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise CodecLabError("reading this video needs imageio-ffmpeg (pip install imageio-ffmpeg)") from None

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
    except _FFMPEG_ERRORS as err:
        raise _ffmpeg_error(path, err) from None
    check_pixels(height, width, f"a frame of {path}")

    def frames():
        count = 0
        try:
            while max_frames is None or count < max_frames:
                try:
                    buffer = next(reader, None)
                except _FFMPEG_ERRORS as err:
                    raise _ffmpeg_error(path, err) from None
                if buffer is None:
                    break
                count += 1
                yield np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)
        finally:
            reader.close()
        if not count:
            raise CodecLabError(f"video {path} has no frames")
        declared = round((meta.get("duration") or 0) * (meta.get("fps") or 0))
        if count < declared - 1 and (max_frames is None or count < max_frames):  # a frame of slack: durations round
            notice(f"{path.name}: {count} of the {declared} frames its header declares could be decoded (a truncated file?)")

    fps = Fraction(meta.get("fps") or DEFAULT_FPS).limit_denominator(1001)
    return VideoStream(frames(), width, height, None, fps, source="ffmpeg")


# Writing ------------------------------------------------------------------------------------


def write_video(path: Path, clip: Clip | VideoStream) -> None:
    """Write ``clip`` as Y4M (``.y4m``) or as a new folder of PNG frames (any other path),
    atomically, one frame at a time (a :class:`VideoStream` is consumed as it is written)."""
    path = Path(path)
    if path.suffix.lower() == ".y4m":
        def write_y4m(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                handle.write(y4m_header(clip.width, clip.height, clip.fps, clip.colour_range))
                for frame in clip.frames:
                    handle.write(y4m_frame(rgb_to_yuv420(frame, clip.matrix, clip.colour_range)))

        write_atomically(path, write_y4m)
        return
    if path.suffix:
        raise CodecLabError(f"unknown video output {path.suffix!r}: use .y4m or a folder name (PNG frames)")
    digits = max(4, len(str(clip.count)))

    def write_pngs(folder: Path) -> None:
        for index, frame in enumerate(clip.frames, 1):
            Image.fromarray(frame).save(folder / f"frame_{index:0{digits}d}.png")

    write_folder_atomically(path, write_pngs)


def parse_frame_rate(text: str) -> Fraction:
    match = re.fullmatch(r"(\d+)(?::(\d+))?", text)
    if not match or int(match.group(1)) == 0 or (match.group(2) and int(match.group(2)) == 0):
        raise CodecLabError(f"frame rate must be N or N:D, got {text!r}")
    return Fraction(int(match.group(1)), int(match.group(2) or 1))


def parse_frame_range(text: str | None) -> tuple[int, int | None]:
    """``--frames`` of encode and decode alike: ``N`` is the first N frames (``0:N``), ``START:STOP``
    frames START to STOP - 1 from 0 (either end may be left out); ``(start, stop or None)``."""
    if text is None:
        return 0, None
    usage = (f"--frames takes N (the first N frames) or START:STOP (frame numbers from 0, STOP not included, START < STOP); "
             f"got {text!r}")
    if re.fullmatch(r"\d+", text):
        start, stop = 0, int(text)
    elif pair := re.fullmatch(r"(\d*):(\d*)", text):
        start, stop = int(pair[1] or 0), (int(pair[2]) if pair[2] else None)
    else:
        raise CodecLabError(usage)
    if stop is not None and stop <= start:
        raise CodecLabError(usage)
    return start, stop


def frame_range(video: VideoStream, start: int, stop: int | None) -> VideoStream:
    """Frames ``start .. stop - 1`` of a video opened with ``max_frames=stop`` (earlier frames are
    read and dropped: Y4M and ffmpeg streams cannot seek)."""
    if start == 0:
        return video
    count = None if video.count is None else max(video.count - start, 0)
    return dataclasses.replace(video, frames=itertools.islice(video.frames, start, None), count=count)
