"""The video file container: a sequence header, a frame index, and each frame's streams.

Layout (integers unsigned; ``varint`` is LEB128 as in :mod:`.container`)::

    magic          4 bytes  b"CLAV"
    version        1 byte   VIDEO_FORMAT_VERSION
    codec id       1 byte length + ASCII
    model hash     8 bytes  first 8 bytes of the model's weights SHA-256
    coder          1 byte   wire id (codeclab.coding.CODERS)
    width, height  varint   frame size before padding
    frames         varint   frame count
    frame rate     varint numerator, varint denominator
    colour         1 byte   bit 0: full range (else limited); bits 1-2: matrix (0 BT.601, 1 BT.709);
                            bit 3: the source was Y4M (decode writes Y4M by default)
    intra period   varint   N: an I-frame every N frames; 0: only the first frame (DCVC's -1)
    flags          1 byte   bit 0: a rate level follows; version 2: bit 1 fast decoding (as in
                            :mod:`.container` version 4: pixels depend on the decoding CPU)
    rate level     varint   (flag bit 0)
    frame index    per frame: type (1 byte: 0 = I, 1 = P), stream count (varint), stream lengths
                   (varints), CRC-32 of the frame's stream bytes (4 bytes, little endian);
                   version 3: the frame's latent check (4 bytes, little endian; :func:`frame_check`)
    header CRC     4 bytes  CRC-32 of every byte above
    payload        every frame's streams, in frame order

The index gives every frame's offset, so a decoder can start at any I-frame. Every size, count
and length is checked against the bytes present before anything is allocated or decoded.

Versions: 1, 2 (the fast-decoding flag) and 3 (a latent check per frame, as in the image
container's version 5: CRC-32 of the sequence fields (magic to rate level, as version 3 writes
them), the frame's number and type, and the CRC-32 of its decoded latent; the decoder recomputes
it for each frame before the frame is synthesised, so damage under recomputed CRCs, or an edited
header, is an error, not other pictures). CodecLab writes version 3; every version is read.

This module imports no torch, so ``codeclab info`` reads headers in a fraction of a second;
coding frames is :mod:`.video_file`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction

from ..coding import CODERS
from ..errors import CodecLabError
from . import container
from .container import check_sealed, encode_varint, index_entry, read_index_entry, read_opening, sealed

VIDEO_MAGIC = b"CLAV"
VIDEO_FORMAT_VERSION = 3
READABLE_VIDEO_VERSIONS = (1, 2, 3)
FRAME_TYPES = ("I", "P")
_FULL_RANGE, _Y4M_SOURCE, _HAS_LEVEL, _FAST_DECODE = 1, 8, 1, 2
# The colour byte's matrix codes: fixed by the format (data.colour's table may grow in any order).
MATRIX_CODES = ("bt601", "bt709")
MAX_FRAMES = 1 << 20
LISTED_FRAMES = 1000  # frames `codeclab info` lists one by one


@dataclass(frozen=True, slots=True)  # slots: an index of MAX_FRAMES records stays ~100 MB
class FrameRecord:
    kind: str  # "I" or "P"
    stream_lengths: tuple[int, ...]
    crc: int
    latent_check: int | None = None  # version 3


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
    fast_decode: bool = False

    @property
    def version(self) -> int:
        """3 when the frames carry latent checks (every file CodecLab writes), else 2 or 1."""
        if self.records and self.records[0].latent_check is not None:
            return 3
        return 2 if self.fast_decode else 1

    def describe(self) -> dict:
        """The header as JSON-ready values; the frame index lists the first :data:`LISTED_FRAMES`
        frames (``frames_not_listed`` counts the rest), so a file of a million frames prints a page."""
        offset, frames = 0, []
        for index, record in enumerate(self.records[:LISTED_FRAMES]):
            size = sum(record.stream_lengths)
            frames.append({"frame": index, "type": record.kind, "bytes": size, "offset": offset})
            offset += size
        unlisted = {"frames_not_listed": len(self.records) - LISTED_FRAMES} if len(self.records) > LISTED_FRAMES else {}
        return {
            "format": "video", "format_version": self.version, "codec": self.codec_id,
            "model_hash": self.model_hash.hex(), "coder": self.coder, "width": self.width, "height": self.height,
            "frame_count": len(self.records), "fps": f"{self.fps.numerator}:{self.fps.denominator}",
            "range": self.colour_range, "matrix": self.matrix, "intra_period": self.intra_period or -1,
            "rate_level": self.level,
            "synthesis": container.synthesis_description(self.fast_decode), "latent_checks": self.version == 3,
            "frames": frames, **unlisted,
        }


def colour_byte(colour_range: str, matrix: str, y4m_source: bool) -> int:
    """The colour byte: bit 0 full range, bits 1-2 the matrix code, bit 3 a Y4M source."""
    return (_FULL_RANGE if colour_range == "full" else 0) | MATRIX_CODES.index(matrix) << 1 | (_Y4M_SOURCE if y4m_source else 0)


def parse_colour_byte(colour: int) -> tuple[str, str, bool] | None:
    """``(range, matrix, y4m_source)`` of a colour byte, or None for an invalid one."""
    if (colour >> 1 & 3) >= len(MATRIX_CODES) or colour & ~15:
        return None
    return "full" if colour & _FULL_RANGE else "limited", MATRIX_CODES[colour >> 1 & 3], bool(colour & _Y4M_SOURCE)


def is_video_file(data: bytes) -> bool:
    return data[: len(VIDEO_MAGIC)] == VIDEO_MAGIC


def _sequence_fields(header: VideoHeader, version: int) -> bytes:
    """The header's bytes from the magic to the rate level, as ``version`` writes them."""
    codec_id = header.codec_id.encode("ascii")
    head = bytearray(VIDEO_MAGIC) + bytes([version, len(codec_id)]) + codec_id + header.model_hash
    head += bytes([CODERS.wire_ids[header.coder]])
    head += encode_varint(header.width) + encode_varint(header.height) + encode_varint(len(header.records))
    head += encode_varint(header.fps.numerator) + encode_varint(header.fps.denominator)
    head += bytes([colour_byte(header.colour_range, header.matrix, header.y4m_source)])
    head += encode_varint(header.intra_period)
    head += bytes([(_HAS_LEVEL if header.level is not None else 0) | (_FAST_DECODE if header.fast_decode else 0)])
    head += encode_varint(header.level) if header.level is not None else b""
    return bytes(head)


def sequence_crc(header: VideoHeader) -> int:
    """CRC-32 of the sequence fields as version 3 writes them: where every frame's check starts."""
    return zlib.crc32(_sequence_fields(header, 3))


def frame_check(sequence: int, index: int, kind: str, latent_crc: int) -> int:
    """Frame ``index``'s latent check (module docstring), from :func:`sequence_crc`, the frame's
    type and the CRC-32 of its decoded latent."""
    return zlib.crc32(encode_varint(index) + bytes([FRAME_TYPES.index(kind)]) + struct.pack("<I", latent_crc), sequence)


def frame_streams(data: bytes, header: VideoHeader, offset: int) -> list[list[bytes]]:
    """Every frame's streams, from the payload at ``offset`` (:func:`unpack_video`'s)."""
    frames = []
    for record in header.records:
        frames.append([])
        for length in record.stream_lengths:
            frames[-1].append(data[offset : offset + length])
            offset += length
    return frames


def pack_video(header: VideoHeader, frames: list[list[bytes]]) -> bytes:
    """Serialise a header and every frame's streams (the index's lengths and CRCs are computed
    from ``frames``; the records' types and latent checks are read, one record per frame)."""
    if len(frames) != len(header.records):
        raise ValueError("one record per frame")
    head = bytearray(_sequence_fields(header, header.version))
    for record, streams in zip(header.records, frames):
        head += bytes([FRAME_TYPES.index(record.kind)]) + index_entry(streams)
        head += struct.pack("<I", record.latent_check) if header.version == 3 else b""
    return sealed(head, frames)


def unpack_video(data: bytes) -> tuple[VideoHeader, int]:
    """``(header, payload offset)``; every field checked, frame CRCs checked when decoding."""
    reader, version, codec_id_bytes, hash_bytes, coder = read_opening(data, VIDEO_MAGIC, READABLE_VIDEO_VERSIONS, "video")
    width, height, count = reader.varint(), reader.varint(), reader.varint()
    numerator, denominator = reader.varint(), reader.varint()
    colour, intra_period, flags = reader.byte(), reader.varint(), reader.byte()
    if flags & ~(_HAS_LEVEL | (_FAST_DECODE if version >= 2 else 0)):
        raise CodecLabError(f"corrupt file: unknown header flags {flags:#x}")
    level = reader.varint() if flags & _HAS_LEVEL else None
    if count > min(MAX_FRAMES, len(data)):  # every record takes bytes: refuse a count the file cannot hold
        raise CodecLabError(f"corrupt file: {count} frames")
    records = []
    for _ in range(count):
        kind = reader.byte()
        streams = reader.varint()
        if kind >= len(FRAME_TYPES) or streams > 16:
            raise CodecLabError(f"corrupt file: frame {len(records)} has type {kind} and {streams} streams")
        lengths, crc = read_index_entry(reader, streams)
        check = struct.unpack("<I", reader.take(4))[0] if version == 3 else None
        records.append(FrameRecord(FRAME_TYPES[kind], lengths, crc, check))
    offset = check_sealed(data, reader, (r.stream_lengths for r in records), "frames")
    try:
        codec_id = codec_id_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise CodecLabError("corrupt file: codec id is not ASCII") from None
    if not (0 < width <= container.MAX_SIDE and 0 < height <= container.MAX_SIDE) or count == 0:
        raise CodecLabError(f"corrupt file: {count} frames of {width}x{height}")
    coder_name = CODERS.wire_name(coder)
    described = parse_colour_byte(colour)
    if coder_name is None or numerator == 0 or denominator == 0 or described is None:
        raise CodecLabError("corrupt file: unknown coder, frame rate or colour description")
    header = VideoHeader(codec_id, hash_bytes, width, height, Fraction(numerator, denominator), *described,
                         intra_period, level, tuple(records), coder_name,
                         bool(flags & _FAST_DECODE))
    return header, offset
