"""The CodecLab file container.

Layout (all integers unsigned; ``varint`` is LEB128, at most 5 bytes)::

    magic        4 bytes  b"CLAB"
    version      1 byte   FORMAT_VERSION
    codec id     1 byte length + ASCII (the codec registry name)
    model hash   8 bytes  first 8 bytes of the model's weights SHA-256
    coder        1 byte   entropy coder: its wire id (codeclab.coding.CODERS)
    height       varint   original image height (before padding)
    width        varint   original image width
    bit depth    1 byte   bits per sample of the coded image (8)
    colour mode  1 byte   0 = RGB
    rate level   varint   version 2: the level of a variable-rate model
    flags        1 byte   version 3: bit 0 rate level follows, bit 1 tile size follows;
                          version 4+: bit 2 fast decoding (below)
    rate level   varint   version 3+, flag bit 0
    tile size    varint   version 3+, flag bit 1: square tiles of this side, row by row
    latent check 4 bytes  version 5: :func:`latent_check` (little endian)
    streams      1 byte   count (version 3+: varint), then one varint length per stream
    checksum     4 bytes  CRC-32 (little endian) of every byte before it and of all stream bytes
    payload      the streams, concatenated

The header costs about 30-40 bytes; it is counted in every reported bpp.

Public API (benchmarks and tools use only this): :class:`Header`, :func:`pack`, :func:`unpack`,
:data:`FORMAT_VERSION`, :data:`MODEL_HASH_BYTES`; the field codecs :func:`encode_varint` and
:class:`ByteReader` are shared with the video container (:mod:`.video_file`).

Versions: 1 (fixed-rate models), 2 (adds the rate level of a variable-rate model), 3 (tiled
images: a tile size, and the streams of every tile in turn, row by row), 4 (the fast-decoding
flag: decoders may run the synthesis at the CPU's fastest precision, so its pixels depend on the
decoding machine; without it they run it in float64, the same pixels everywhere) and 5 (the
latent check). Every version is read; CodecLab writes version 5.

The latent check makes a damaged file an error even where the CRC-32 was recomputed (a tool
that edits headers, or deliberate damage), where the entropy decoder would otherwise decode
other symbols, or another size, rate level or tile grid, without noticing. It is a CRC-32 of the
header fields (everything before the check, written canonically) and of each tile's decoded
latent ``y_hat`` (float32, -0 as +0), which only a decoder can compute: the encoder stores it, the
decoder recomputes it from what it decoded and refuses the file when they differ, before any
pixel is written. Latents are exact on every machine for a portable model; a model with float
entropy parameters (``portable: false``) decodes its files only under the configuration that
wrote them, and elsewhere now fails this check instead of decoding means off in their last bits.
A random damage passes it with probability 2^-32.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

from ..coding import CODERS
from ..errors import CodecLabError

MAGIC = b"CLAB"
FORMAT_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
_HAS_LEVEL, _HAS_TILE, _FAST_DECODE = 1, 2, 4
COLOUR_MODES = {0: "RGB"}
MODEL_HASH_BYTES = 8
MAX_SIDE = 1 << 20


@dataclass(frozen=True)
class Header:
    codec_id: str
    model_hash: bytes
    height: int
    width: int
    stream_lengths: tuple[int, ...]
    coder: str = "codeclab"
    bit_depth: int = 8
    colour_mode: int = 0
    level: int | None = None
    tile: int | None = None
    fast_decode: bool = False
    latent_check: int | None = None

    @property
    def version(self) -> int:
        """The format version this header is written in (the lowest that holds it; every file
        CodecLab writes has a latent check, so version 5)."""
        if self.latent_check is not None:
            return 5
        if self.fast_decode:
            return 4
        if self.tile is not None:
            return 3
        return 1 if self.level is None else 2

    def describe(self) -> dict:
        return {
            "format_version": self.version,
            "codec": self.codec_id,
            "model_hash": self.model_hash.hex(),
            "coder": self.coder,
            "height": self.height,
            "width": self.width,
            "bit_depth": self.bit_depth,
            "colour_mode": COLOUR_MODES[self.colour_mode],
            "rate_level": self.level,
            "tile": self.tile,
            "synthesis": synthesis_description(self.fast_decode),
            "latent_check": None if self.latent_check is None else f"{self.latent_check:08x}",
            "stream_bytes": list(self.stream_lengths),
        }


def latent_check(header: Header, tile_crcs: list[int]) -> int:
    """The latent check of a file (module docstring): CRC-32 of the header's fields before the
    check, as version 5 writes them, and of each tile's latent CRC-32, in tile order."""
    fields = _fields(replace(header, latent_check=0))
    return zlib.crc32(b"".join(struct.pack("<I", crc) for crc in tile_crcs), zlib.crc32(fields))


def synthesis_description(fast_decode: bool) -> str:
    """What ``codeclab info`` says of a file's fast-decoding flag (image and video files alike)."""
    return "fast (pixels depend on the CPU)" if fast_decode else "portable (float64)"


def encode_varint(value: int) -> bytes:
    """LEB128 of a non-negative integer."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class ByteReader:
    """Reads a header field by field; running out of bytes is a one-line "truncated file" error."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CodecLabError("truncated file: the header ends early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise CodecLabError("corrupt file: malformed length field")


def read_opening(data: bytes, magic: bytes, readable: tuple[int, ...], kind: str = "") -> tuple[ByteReader, int, bytes, bytes, int]:
    """The fields every coded file starts with: ``(reader, version, codec id bytes, model hash,
    coder byte)``, the magic and version checked; ``kind`` names the file in errors (``""``: an
    image file, ``"video"``)."""
    if data[: len(magic)] != magic:
        raise CodecLabError(f"not a CodecLab {kind + ' ' if kind else ''}file (bad magic)")
    reader = ByteReader(data)
    reader.take(len(magic))
    version = reader.byte()
    if version not in readable:
        raise CodecLabError(f"unsupported {kind or 'file'} format version {version} (this CodecLab reads versions 1 to {max(readable)})")
    codec_id = reader.take(reader.byte())
    return reader, version, codec_id, reader.take(MODEL_HASH_BYTES), reader.byte()


def index_entry(streams: list[bytes] | tuple[bytes, ...]) -> bytes:
    """One unit's entry in the index of a file of many units (video frames, implicit groups): the
    stream count, each stream's length and the CRC-32 of the streams."""
    return encode_varint(len(streams)) + b"".join(encode_varint(len(s)) for s in streams) + struct.pack("<I", zlib.crc32(b"".join(streams)))


def read_index_entry(reader: ByteReader, streams: int) -> tuple[tuple[int, ...], int]:
    """``(stream lengths, CRC-32)`` of an :func:`index_entry` whose stream count was read and checked."""
    lengths = tuple(reader.varint() for _ in range(streams))
    return lengths, struct.unpack("<I", reader.take(4))[0]


def sealed(head: bytes, units) -> bytes:
    """A multi-unit file: ``head`` (fields and index), its CRC-32, then every unit's streams."""
    return bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))) + b"".join(b"".join(streams) for streams in units)


def check_sealed(data: bytes, reader: ByteReader, lengths, units: str) -> int:
    """Check the CRC-32 after the index just read and that the payload holds exactly the bytes of
    ``lengths`` (one tuple per unit, ``units`` naming them in the error); returns the payload's offset."""
    header_end = reader.pos
    if zlib.crc32(data[:header_end]) != struct.unpack("<I", reader.take(4))[0]:
        raise CodecLabError("corrupt file: header checksum mismatch")
    payload, needed = len(data) - reader.pos, sum(sum(unit) for unit in lengths)
    if needed != payload:
        raise CodecLabError(f"{'truncated' if needed > payload else 'corrupt'} file: {units} hold {payload} bytes, the index says {needed}")
    return reader.pos


def _fields(header: Header) -> bytes:
    """The header's bytes from the magic to the tile size: what the latent check covers."""
    codec_id = header.codec_id.encode("ascii")
    if len(header.model_hash) != MODEL_HASH_BYTES or len(codec_id) > 255:
        raise ValueError("header field out of range")
    head = bytearray(MAGIC)
    head += bytes([header.version, len(codec_id)]) + codec_id + header.model_hash + bytes([CODERS.wire_ids[header.coder]])
    head += encode_varint(header.height) + encode_varint(header.width)
    head += bytes([header.bit_depth, header.colour_mode])
    if header.version >= 3:
        head += bytes([(_HAS_LEVEL if header.level is not None else 0) | (_HAS_TILE if header.tile is not None else 0)
                       | (_FAST_DECODE if header.fast_decode else 0)])
        head += encode_varint(header.level) if header.level is not None else b""
        head += encode_varint(header.tile) if header.tile is not None else b""
    else:
        head += encode_varint(header.level) if header.level is not None else b""
    return bytes(head)


def pack(header: Header, streams: list[bytes]) -> bytes:
    """Serialise ``header`` and ``streams`` (the lengths in ``header`` are taken from ``streams``)."""
    version = header.version
    if version < 3 and len(streams) > 255:
        raise ValueError("header field out of range")
    head = bytearray(_fields(header))
    if version >= 3:
        head += struct.pack("<I", header.latent_check) if header.latent_check is not None else b""
        head += encode_varint(len(streams))
    else:
        head += bytes([len(streams)])
    for stream in streams:
        head += encode_varint(len(stream))
    crc = zlib.crc32(b"".join(streams), zlib.crc32(bytes(head)))
    return bytes(head) + struct.pack("<I", crc) + b"".join(streams)


def unpack(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse and verify a file; raises :class:`CodecLabError` with a one-line reason."""
    reader, version, codec_id_bytes, model_hash, coder = read_opening(data, MAGIC, READABLE_VERSIONS)
    height, width = reader.varint(), reader.varint()
    bit_depth, colour_mode = reader.byte(), reader.byte()
    level, tile, check, flags = (reader.varint() if version == 2 else None), None, None, 0
    if version >= 3:
        flags = reader.byte()
        if flags & ~(_HAS_LEVEL | _HAS_TILE | (_FAST_DECODE if version >= 4 else 0)):
            raise CodecLabError(f"corrupt file: unknown header flags {flags:#x}")
        level = reader.varint() if flags & _HAS_LEVEL else None
        tile = reader.varint() if flags & _HAS_TILE else None
        check = struct.unpack("<I", reader.take(4))[0] if version >= 5 else None
    count = reader.varint() if version >= 3 else reader.byte()
    if count > len(data):  # every stream length takes a byte: refuse a count the file cannot hold
        raise CodecLabError("corrupt file: more streams than bytes")
    lengths = tuple(reader.varint() for _ in range(count))
    header_end = reader.pos
    (crc,) = struct.unpack("<I", reader.take(4))
    payload = data[reader.pos :]
    if sum(lengths) != len(payload):
        problem = "truncated" if sum(lengths) > len(payload) else "corrupt"
        raise CodecLabError(f"{problem} file: streams hold {len(payload)} bytes, the header says {sum(lengths)}")
    if zlib.crc32(payload, zlib.crc32(data[:header_end])) != crc:
        raise CodecLabError("corrupt file: checksum mismatch")
    # The checksum passed, so remaining oddities mean a file written by something else.
    try:
        codec_id = codec_id_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise CodecLabError("corrupt file: codec id is not ASCII") from None
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise CodecLabError(f"corrupt file: image size {height}x{width} out of range")
    coder_name = CODERS.wire_name(coder)
    if coder_name is None:
        raise CodecLabError(f"unsupported entropy coder id {coder} in file")
    if tile is not None and not 0 < tile <= MAX_SIDE:
        raise CodecLabError(f"corrupt file: tile size {tile} out of range")
    if bit_depth != 8 or colour_mode not in COLOUR_MODES:
        raise CodecLabError(f"unsupported image format in file: {bit_depth}-bit, colour mode {colour_mode}")
    streams, pos = [], 0
    for length in lengths:
        streams.append(payload[pos : pos + length])
        pos += length
    return Header(codec_id, model_hash, height, width, lengths, coder_name, bit_depth, colour_mode, level, tile,
                  bool(flags & _FAST_DECODE), check), streams
