"""The neural implicit video container (NIRVANA): the architecture, the clip, each group's streams.

Layout (integers unsigned; ``varint`` is LEB128 as in :mod:`codeclab.formats.container`)::

    magic          4 bytes  b"CLNV"
    version        1 byte   IMPLICIT_FORMAT_VERSION
    architecture   varints  patch, group size, channels, stages, hidden, frequencies, siren (0 or 1)
    width, height  varint   frame size
    frames         varint   frame count
    frame rate     varint numerator, varint denominator
    colour         1 byte   as the video container's (range, matrix, Y4M source)
    group index    per group (ceil(frames / group size) of them): stream count (varint, 3),
                   stream lengths (varints), CRC-32 of the group's stream bytes (4 bytes, little endian)
    header CRC     4 bytes  CRC-32 of every byte above
    payload        every group's streams, in group order (:mod:`codeclab.implicit.weights`)

No model file is involved: the file holds the networks. Group ``k`` needs groups ``0..k`` (its
weights are changes from the previous group's), but only the entropy decoding of those; the
forward pass runs for the groups whose frames are asked for. Every field and length is checked
against the bytes present before anything is allocated. Versions: 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import CodecLabError
from ..formats import container
from ..formats.container import ByteReader, check_sealed, encode_varint, index_entry, read_index_entry, sealed
from ..formats.video_container import MAX_FRAMES, colour_byte, parse_colour_byte
from .architecture import ARCHITECTURE_FIELDS, check_architecture

IMPLICIT_MAGIC = b"CLNV"
IMPLICIT_FORMAT_VERSION = 1
READABLE_IMPLICIT_VERSIONS = (1,)
STREAMS_PER_GROUP = 3


@dataclass(frozen=True)
class ImplicitHeader:
    architecture: dict[str, int]
    width: int
    height: int
    frames: int
    fps: Fraction
    colour_range: str
    matrix: str
    y4m_source: bool
    groups: tuple[tuple[tuple[int, ...], int], ...]  # (stream lengths, CRC-32) per group

    def group_frames(self, group: int) -> range:
        size = self.architecture["group_size"]
        return range(group * size, min((group + 1) * size, self.frames))

    def describe(self) -> dict:
        offset, groups = 0, []
        for index, (lengths, _) in enumerate(self.groups):
            frames = self.group_frames(index)
            groups.append({"group": index, "frames": f"{frames.start}-{frames.stop - 1}", "bytes": sum(lengths),
                           "offset": offset})
            offset += sum(lengths)
        return {"format": "implicit-video", "format_version": IMPLICIT_FORMAT_VERSION, "codec": "nirvana",
                "architecture": self.architecture, "width": self.width, "height": self.height, "frame_count": self.frames,
                "fps": f"{self.fps.numerator}:{self.fps.denominator}", "range": self.colour_range, "matrix": self.matrix,
                "groups": groups}


def is_implicit_file(data: bytes) -> bool:
    return data[: len(IMPLICIT_MAGIC)] == IMPLICIT_MAGIC


def group_count(frames: int, group_size: int) -> int:
    return -(-frames // group_size)


def pack_implicit(header: ImplicitHeader, groups: list[list[bytes]]) -> bytes:
    """Serialise a header (its group lengths and CRCs are computed from ``groups``) and the streams."""
    if len(groups) != group_count(header.frames, header.architecture["group_size"]):
        raise ValueError("one entry per group of frames")
    head = bytearray(IMPLICIT_MAGIC) + bytes([IMPLICIT_FORMAT_VERSION])
    head += b"".join(encode_varint(header.architecture[name]) for name in ARCHITECTURE_FIELDS)
    head += encode_varint(header.width) + encode_varint(header.height) + encode_varint(header.frames)
    head += encode_varint(header.fps.numerator) + encode_varint(header.fps.denominator)
    head += bytes([colour_byte(header.colour_range, header.matrix, header.y4m_source)])
    head += b"".join(index_entry(streams) for streams in groups)
    return sealed(head, groups)


def unpack_implicit(data: bytes) -> tuple[ImplicitHeader, int]:
    """``(header, payload offset)``; every field checked (group CRCs are checked when decoding)."""
    if not is_implicit_file(data):
        raise CodecLabError("not a CodecLab implicit video file (bad magic)")
    reader = ByteReader(data)
    reader.take(len(IMPLICIT_MAGIC))
    version = reader.byte()
    if version not in READABLE_IMPLICIT_VERSIONS:
        raise CodecLabError(f"unsupported implicit video format version {version} (this CodecLab reads version "
                            f"{IMPLICIT_FORMAT_VERSION})")
    architecture = {name: reader.varint() for name in ARCHITECTURE_FIELDS}
    try:
        check_architecture(architecture)
    except CodecLabError as err:
        raise CodecLabError(f"corrupt file: {err}") from None
    width, height, frames = reader.varint(), reader.varint(), reader.varint()
    numerator, denominator, colour = reader.varint(), reader.varint(), reader.byte()
    if not (0 < width <= container.MAX_SIDE and 0 < height <= container.MAX_SIDE) or not 0 < frames <= MAX_FRAMES:
        raise CodecLabError(f"corrupt file: {frames} frames of {width}x{height}")
    described = parse_colour_byte(colour)
    if numerator == 0 or denominator == 0 or described is None:
        raise CodecLabError("corrupt file: unknown frame rate or colour description")
    count = group_count(frames, architecture["group_size"])
    if count > len(data):  # each group's entry takes bytes: refuse a count the file cannot hold
        raise CodecLabError(f"corrupt file: {count} groups")
    groups = []
    for index in range(count):
        streams = reader.varint()
        if streams != STREAMS_PER_GROUP:
            raise CodecLabError(f"corrupt file: group {index} has {streams} streams, expected {STREAMS_PER_GROUP}")
        groups.append(read_index_entry(reader, streams))
    offset = check_sealed(data, reader, (lengths for lengths, _ in groups), "groups")
    header = ImplicitHeader(architecture, width, height, frames, Fraction(numerator, denominator), *described, tuple(groups))
    return header, offset
