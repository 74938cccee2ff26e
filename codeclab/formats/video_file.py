"""Video files: a sequence header, a frame index, and each frame's streams.

Layout (integers unsigned; ``varint`` is LEB128 as in :mod:`.container`)::

    magic          4 bytes  b"CLAV"
    version        1 byte   VIDEO_FORMAT_VERSION
    codec id       1 byte length + ASCII
    model hash     8 bytes  first 8 bytes of the model's weights SHA-256
    coder          1 byte   index into container.CODERS
    width, height  varint   frame size before padding
    frames         varint   frame count
    frame rate     varint numerator, varint denominator
    colour         1 byte   bit 0: full range (else limited); bits 1-2: matrix (0 BT.601, 1 BT.709);
                            bit 3: the source was Y4M (decode writes Y4M by default)
    intra period   varint   N: an I-frame every N frames; 0: only the first frame (DCVC's -1)
    flags          1 byte   bit 0: a rate level follows
    rate level     varint   (flag bit 0)
    frame index    per frame: type (1 byte: 0 = I, 1 = P), stream count (varint), stream lengths
                   (varints), CRC-32 of the frame's stream bytes (4 bytes, little endian)
    header CRC     4 bytes  CRC-32 of every byte above
    payload        every frame's streams, in frame order

The index gives every frame's offset, so a decoder can start at any I-frame (``decode_video``'s
``start``). I-frames are coded by the image codec (two streams for mbt2018-mean), P-frames by the
spatiotemporal model given the previous decoded latent. Every size, count and length is checked
against the bytes present before anything is allocated or decoded.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from ..codecs import Codec
from ..codecs.stem import VideoCodec
from ..data.colour import MATRICES
from ..data.images import check_pixels, max_tile_pixels
from ..data.video import Clip
from ..errors import CodecLabError
from ..progress import progress_bar
from . import container
from .container import ByteReader, encode_varint
from .image_file import (
    CheckedCoder, check_file_level, check_level, check_model, codec_input, model_hash, padded_size, stream_errors, to_uint8,
)

VIDEO_MAGIC = b"CLAV"
VIDEO_FORMAT_VERSION = 1
FRAME_TYPES = ("I", "P")
_FULL_RANGE, _Y4M_SOURCE, _HAS_LEVEL = 1, 8, 1
MAX_FRAMES = 1 << 20
DEFAULT_INTRA_PERIOD = 12  # STEM's test GOP


@dataclass(frozen=True)
class FrameRecord:
    kind: str  # "I" or "P"
    stream_lengths: tuple[int, ...]
    crc: int


@dataclass(frozen=True)
class VideoHeader:
    codec_id: str
    model_hash: bytes
    width: int
    height: int
    fps: Fraction
    colour_range: str
    matrix: str
    y4m_source: bool
    intra_period: int
    level: int | None
    records: tuple[FrameRecord, ...]
    coder: str = "codeclab"

    def describe(self) -> dict:
        offset, frames = 0, []
        for index, record in enumerate(self.records):
            size = sum(record.stream_lengths)
            frames.append({"frame": index, "type": record.kind, "bytes": size, "offset": offset})
            offset += size
        return {
            "format": "video", "format_version": VIDEO_FORMAT_VERSION, "codec": self.codec_id,
            "model_hash": self.model_hash.hex(), "coder": self.coder, "width": self.width, "height": self.height,
            "frame_count": len(self.records), "fps": f"{self.fps.numerator}:{self.fps.denominator}",
            "range": self.colour_range, "matrix": self.matrix, "intra_period": self.intra_period or -1,
            "rate_level": self.level, "frames": frames,
        }


def is_video_file(data: bytes) -> bool:
    return data[: len(VIDEO_MAGIC)] == VIDEO_MAGIC


def pack_video(header: VideoHeader, frames: list[list[bytes]]) -> bytes:
    """Serialise a header and every frame's streams (the index's lengths and CRCs are computed
    from ``frames``; only the records' types are read)."""
    codec_id = header.codec_id.encode("ascii")
    head = bytearray(VIDEO_MAGIC) + bytes([VIDEO_FORMAT_VERSION, len(codec_id)]) + codec_id + header.model_hash
    head += bytes([container.CODERS.index(header.coder)])
    head += encode_varint(header.width) + encode_varint(header.height) + encode_varint(len(frames))
    head += encode_varint(header.fps.numerator) + encode_varint(header.fps.denominator)
    matrix = list(MATRICES).index(header.matrix)
    head += bytes([(_FULL_RANGE if header.colour_range == "full" else 0) | matrix << 1 | (_Y4M_SOURCE if header.y4m_source else 0)])
    head += encode_varint(header.intra_period)
    head += bytes([_HAS_LEVEL if header.level is not None else 0])
    head += encode_varint(header.level) if header.level is not None else b""
    for record, streams in zip(header.records, frames):
        head += bytes([FRAME_TYPES.index(record.kind)]) + encode_varint(len(streams))
        head += b"".join(encode_varint(len(s)) for s in streams)
        head += struct.pack("<I", zlib.crc32(b"".join(streams)))
    head += struct.pack("<I", zlib.crc32(bytes(head)))
    return bytes(head) + b"".join(b"".join(streams) for streams in frames)


def unpack_video(data: bytes) -> tuple[VideoHeader, int]:
    """``(header, payload offset)``; every field checked, frame CRCs checked when decoding."""
    if not is_video_file(data):
        raise CodecLabError("not a CodecLab video file (bad magic)")
    reader = ByteReader(data)
    reader.take(len(VIDEO_MAGIC))
    version = reader.byte()
    if version != VIDEO_FORMAT_VERSION:
        raise CodecLabError(f"unsupported video format version {version} (this CodecLab reads version {VIDEO_FORMAT_VERSION})")
    codec_id_bytes = reader.take(reader.byte())
    hash_bytes, coder = reader.take(container.MODEL_HASH_BYTES), reader.byte()
    width, height, count = reader.varint(), reader.varint(), reader.varint()
    numerator, denominator = reader.varint(), reader.varint()
    colour, intra_period, flags = reader.byte(), reader.varint(), reader.byte()
    level = reader.varint() if flags & _HAS_LEVEL else None
    if count > min(MAX_FRAMES, len(data)):  # every record takes bytes: refuse a count the file cannot hold
        raise CodecLabError(f"corrupt file: {count} frames")
    records = []
    for _ in range(count):
        kind = reader.byte()
        streams = reader.varint()
        if kind >= len(FRAME_TYPES) or streams > 16:
            raise CodecLabError(f"corrupt file: frame {len(records)} has type {kind} and {streams} streams")
        lengths = tuple(reader.varint() for _ in range(streams))
        (crc,) = struct.unpack("<I", reader.take(4))
        records.append(FrameRecord(FRAME_TYPES[kind], lengths, crc))
    header_end = reader.pos
    (crc,) = struct.unpack("<I", reader.take(4))
    if zlib.crc32(data[:header_end]) != crc:
        raise CodecLabError("corrupt file: header checksum mismatch")
    payload = len(data) - reader.pos
    needed = sum(sum(r.stream_lengths) for r in records)
    if needed != payload:
        raise CodecLabError(f"{'truncated' if needed > payload else 'corrupt'} file: frames hold {payload} bytes, the index says {needed}")
    try:
        codec_id = codec_id_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise CodecLabError("corrupt file: codec id is not ASCII") from None
    if not (0 < width <= container.MAX_SIDE and 0 < height <= container.MAX_SIDE) or count == 0:
        raise CodecLabError(f"corrupt file: {count} frames of {width}x{height}")
    if coder >= len(container.CODERS) or numerator == 0 or denominator == 0 or (colour >> 1 & 3) >= len(MATRICES) or colour & ~15:
        raise CodecLabError("corrupt file: unknown coder, frame rate or colour description")
    header = VideoHeader(codec_id, hash_bytes, width, height, Fraction(numerator, denominator),
                         "full" if colour & _FULL_RANGE else "limited", list(MATRICES)[colour >> 1 & 3],
                         bool(colour & _Y4M_SOURCE), intra_period, level, tuple(records), container.CODERS[coder])
    return header, reader.pos


def check_frame_size(codec: Codec, height: int, width: int, what: str) -> tuple[int, int]:
    """The padded frame size, after refusing frames over the pixel limits (video is not tiled)."""
    check_pixels(height, width, what)
    size = padded_size(height, width, codec.downsampling)
    if size[0] * size[1] > max_tile_pixels():
        raise CodecLabError(f"{what} ({width}x{height}) are over the per-frame limit of {max_tile_pixels()} pixels "
                            "(CODECLAB_MAX_TILE_PIXELS)")
    return size


def frame_types(count: int, intra_period: int) -> list[str]:
    """``"I"``/``"P"`` of each frame: an I-frame every ``intra_period`` frames (0 or -1: the first only)."""
    return ["I" if t == 0 or (intra_period > 0 and t % intra_period == 0) else "P" for t in range(count)]


def default_intra_period(codec: Codec) -> int:
    """STEM's GOP for a video codec; 1 (all-intra) for an image codec, which has no P-frames."""
    return DEFAULT_INTRA_PERIOD if isinstance(codec, VideoCodec) else 1


def _check_codec_for(codec: Codec, kinds: list[str]) -> None:
    if "P" in kinds and not isinstance(codec, VideoCodec):
        raise CodecLabError(f"model {codec.codec_id!r} is an image codec: it codes video all-intra only (--intra-period 1)")


@dataclass
class EncodedVideo:
    data: bytes
    kinds: list[str]
    frame_bytes: list[int]
    latents: list[torch.Tensor]  # y_hat of every frame (what the decoder will reconstruct from)


@torch.no_grad()
def encode_video(codec: Codec, clip: Clip, intra_period: int = DEFAULT_INTRA_PERIOD, level: int | None = None,
                 analysed: list[torch.Tensor] | None = None, progress: bool = False) -> EncodedVideo:
    """Code every frame of ``clip``; ``intra_period``: see :func:`frame_types`. ``analysed``: the
    frames' ``g_a`` outputs (:func:`analyse_frames`) when the caller codes one clip many times;
    ``progress``: a bar per frame on a terminal."""
    if intra_period < -1:
        raise CodecLabError(f"intra period must be a positive number of frames, or -1 (first frame only); got {intra_period}")
    check_level(codec, level, "--quality or --level")
    height, width = clip.height, clip.width
    check_frame_size(codec, height, width, "the video's frames")
    kinds = frame_types(len(clip.frames), intra_period)
    _check_codec_for(codec, kinds)
    codec.ensure_tables()
    frames, latents, reference = [], [], None
    for index, kind in progress_bar(enumerate(kinds), total=len(kinds), desc="encode", unit="frame", enabled=progress):
        y = analysed[index] if analysed is not None else codec.analyse(codec_input(clip.frames[index], codec.downsampling))
        if kind == "I":
            streams, reference = codec.entropy_model.compress(y, codec.coder, level)
        else:
            streams, reference = codec.compress_p(y, reference, level)
        frames.append(streams)
        latents.append(reference)
    header = VideoHeader(codec.codec_id, model_hash(codec), width, height, clip.fps, clip.colour_range, clip.matrix,
                         clip.source == "y4m", max(intra_period, 0), level,
                         tuple(FrameRecord(k, tuple(map(len, s)), 0) for k, s in zip(kinds, frames)), codec.coder.name)
    data = pack_video(header, frames)
    return EncodedVideo(data, kinds, [sum(map(len, s)) for s in frames], latents)


def analyse_frames(codec: Codec, clip: Clip) -> list[torch.Tensor]:
    """``g_a`` of every frame (padded as :func:`encode_video` pads): level-independent."""
    with torch.no_grad():
        return [codec.analyse(codec_input(frame, codec.downsampling)) for frame in clip.frames]


def decoded_latents(data: bytes, codec: Codec, start: int = 0, stop: int | None = None):
    """``(header, iterator of y_hat)`` of frames ``start .. stop - 1``: entropy decoding only,
    from the last I-frame at or before ``start``; every check comes before the first frame."""
    header, offset = unpack_video(data)
    check_model(header, codec)  # the video header has the same codec id and model hash fields
    if header.coder != codec.coder.name:
        codec.set_coder(header.coder)
    size = check_frame_size(codec, header.height, header.width, "the file's frames")
    check_file_level(codec, header.level)
    kinds = [r.kind for r in header.records]
    count = len(kinds)
    stop = count if stop is None else min(stop, count)
    if not 0 <= start < stop:
        raise CodecLabError(f"frames {start}:{stop} are not in a file of {count} frames")
    if kinds[0] != "I":
        raise CodecLabError("corrupt file: the first frame is a P-frame (no reference frame)")
    _check_codec_for(codec, kinds)
    first = max(t for t in range(start + 1) if kinds[t] == "I")
    offsets = np.cumsum([0] + [sum(r.stream_lengths) for r in header.records])
    latent_shape = (size[0] // codec.stride, size[1] // codec.stride)
    codec.ensure_tables()

    def frames():
        reference = None
        for t in range(first, stop):
            record = header.records[t]
            chunk = data[offset + offsets[t] : offset + offsets[t + 1]]
            if zlib.crc32(chunk) != record.crc:
                raise CodecLabError(f"corrupt file: frame {t} checksum mismatch")
            expected = codec.num_streams if record.kind == "I" else codec.temporal_model.num_streams
            if len(record.stream_lengths) != expected:
                raise CodecLabError(f"corrupt file: frame {t} has {len(record.stream_lengths)} streams, expected {expected}")
            streams = [s.tobytes() for s in np.split(np.frombuffer(chunk, dtype=np.uint8), np.cumsum(record.stream_lengths)[:-1])]
            checked = CheckedCoder(codec.coder)
            with torch.no_grad(), stream_errors():
                if record.kind == "I":
                    reference = codec.entropy_model.decompress(streams, latent_shape, checked, header.level)
                else:
                    reference = codec.decode_p(streams, reference, header.level, coder=checked)
                checked.check_all_ended()
            if t >= start:
                yield reference

    return header, frames()


@torch.no_grad()
def decode_video(data: bytes, codec: Codec, start: int = 0, stop: int | None = None, progress: bool = False) -> Clip:
    """Frames ``start .. stop - 1`` of a video file (decoding from the last I-frame at or before
    ``start``), as a :class:`Clip` with the source's frame rate, range and matrix; ``progress``: a
    bar per frame on a terminal."""
    header, latents = decoded_latents(data, codec, start, stop)
    count = len(range(len(header.records))[start:stop])
    frames = [to_uint8(codec.synthesize(y_hat))[: header.height, : header.width]
              for y_hat in progress_bar(latents, total=count, desc="decode", unit="frame", enabled=progress)]
    return Clip(frames, header.fps, header.colour_range, header.matrix, "y4m" if header.y4m_source else "png")
