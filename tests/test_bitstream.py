import pytest

from codeclab import bitstream
from codeclab.errors import CodecLabError

HEADER = bitstream.Header("mbt2018-mean", bytes(range(8)), height=513, width=70000, stream_lengths=())
STREAMS = [b"\x01\x02\x03" * 50, b"z" * 300]


def packed():
    return bitstream.pack(HEADER, STREAMS)


def test_roundtrip():
    header, streams = bitstream.unpack(packed())
    assert streams == STREAMS
    assert (header.codec_id, header.model_hash, header.height, header.width) == ("mbt2018-mean", bytes(range(8)), 513, 70000)
    assert header.stream_lengths == (150, 300)
    assert len(packed()) - sum(map(len, STREAMS)) < 45  # header overhead


@pytest.mark.parametrize("cut", [0, 3, 10, 30, len(packed()) - 1])
def test_truncated(cut):
    with pytest.raises(CodecLabError, match="truncated|bad magic"):
        bitstream.unpack(packed()[:cut])


def test_every_flipped_bit_is_caught():
    data = packed()
    for pos in range(len(data)):
        corrupt = bytearray(data)
        corrupt[pos] ^= 0x10
        with pytest.raises(CodecLabError):
            bitstream.unpack(bytes(corrupt))


def test_unknown_version_and_magic():
    data = bytearray(packed())
    data[4] = 99
    with pytest.raises(CodecLabError, match="unsupported file format version 99"):
        bitstream.unpack(bytes(data))
    with pytest.raises(CodecLabError, match="bad magic"):
        bitstream.unpack(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_trailing_garbage_rejected():
    with pytest.raises(CodecLabError, match="corrupt file"):
        bitstream.unpack(packed() + b"x")
