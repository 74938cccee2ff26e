"""CodecLab's rANS coder on hostile input: malformed tables, bad arguments and corrupt streams
must raise ValueError (one line), never crash, read out of bounds or hang. compressai's rANS,
which checks nothing itself, gets the same table and index checks from its adapter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeclab.coding.coders import CdfTables
from codeclab.coding.compressai_coder import CompressaiCoder
from codeclab.errors import CodecLabError
from codeclab.coding.native import CodecLabCoder, CodecLabStreamDecoder, CodecLabStreamEncoder

TABLES = CdfTables(
    np.array([[0, 1, 30000, 65535, 65536, 0], [0, 20000, 40000, 60000, 65000, 65536]], np.int32),
    np.array([5, 6], np.int32),
    np.array([-1, 7], np.int32),
)
N = 300
RNG = np.random.default_rng(11)
INDEXES = RNG.integers(0, 2, N).astype(np.int32)
SYMBOLS = (RNG.integers(-3, 12, N) + np.where(RNG.random(N) < 0.02, 2**30, 0)).astype(np.int32)
FREQS = RNG.integers(0, 9, (40, 6)) + np.eye(40, 6, dtype=np.int64)
CATS = np.array([RNG.choice(np.flatnonzero(r)) for r in FREQS], np.int32)


def valid_stream(threads: int = 1) -> bytes:
    encoder = CodecLabStreamEncoder(threads)
    encoder.encode(SYMBOLS, INDEXES, TABLES)
    encoder.encode_categorical(CATS, FREQS)
    return encoder.finish()


def decode_all(data: bytes) -> None:
    """Decodes like a codec would; any failure must be a one-line ValueError."""
    try:
        decoder = CodecLabStreamDecoder(data, threads=2)
        out = decoder.decode(INDEXES, TABLES)
        assert out.shape == INDEXES.shape
        cats = decoder.decode_categorical(FREQS)
        assert ((cats >= 0) & (cats < FREQS.shape[1])).all()
        assert (FREQS[np.arange(len(cats)), cats] > 0).all()
        decoder.at_end()
    except ValueError as error:
        assert str(error) and "\n" not in str(error)


def with_table(cdf_row, length, offset=0):
    cdfs = np.zeros((1, max(len(cdf_row), 1)), np.int32)
    cdfs[0, : len(cdf_row)] = cdf_row
    return CdfTables(cdfs, np.array([length], np.int32), np.array([offset], np.int32))


@pytest.mark.parametrize(
    "tables,message",
    [
        (with_table([0, 30000, 20000, 65536], 4), "not strictly increasing"),
        (with_table([0, 30000, 30000, 65536], 4), "zero-frequency"),
        (with_table([0, 30000, 65536], 4), "outside [2, 3]"),
        (with_table([0, 65536], 1), "outside [2, 2]"),
        (with_table([0, 30000, 65535], 3), "end at 65536"),
        (with_table([1, 30000, 65536], 3), "start at 0"),
        (with_table([0, 30000, 70000], 3), "end at 65536"),
        (CdfTables(np.zeros((2, 3), np.int32), np.array([3], np.int32), np.array([0], np.int32)), "one entry per"),
    ],
)
@pytest.mark.parametrize("coder", [CodecLabCoder(), CompressaiCoder()], ids=["codeclab", "compressai"])
def test_malformed_tables(tables, message, coder):
    data = coder.encode_with_indexes(SYMBOLS % 16, INDEXES, TABLES)
    for call in (
        lambda: coder.encode_with_indexes(np.zeros(3, np.int32), np.zeros(3, np.int32), tables),
        lambda: coder.decoder(data).decode(np.zeros(3, np.int32), tables),
    ):
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            call()


def test_compressai_adapter_checks_indexes_and_refuses_what_compressai_cannot_do():
    coder, symbols = CompressaiCoder(), SYMBOLS % 2**20  # escapes up to 2^20
    data = coder.encode_with_indexes(symbols, INDEXES, TABLES)
    assert np.array_equal(coder.decode_with_indexes(data, INDEXES, TABLES), symbols)
    with pytest.raises(ValueError, match="too far from their tables"):  # compressai itself would loop forever
        coder.encode_with_indexes(SYMBOLS, INDEXES, TABLES)
    for bad in (INDEXES + 2, -INDEXES - 1):  # compressai itself would read out of bounds
        with pytest.raises(ValueError, match=r"table indexes outside \[0, 2\)"):
            coder.encode_with_indexes(symbols, bad, TABLES)
        with pytest.raises(ValueError, match=r"table indexes outside \[0, 2\)"):
            coder.decode_with_indexes(data, bad, TABLES)
    with pytest.raises(ValueError, match="offset is outside"):
        coder.encode_with_indexes(SYMBOLS[:1], INDEXES[:1], with_table([0, 30000, 65536], 3, offset=2**31 - 1))
    with pytest.raises(CodecLabError, match="cannot code categorical symbols.*--coder codeclab"):
        coder.encoder().encode_categorical(CATS, FREQS)
    with pytest.raises(CodecLabError, match="cannot code categorical symbols"):
        coder.decoder(data).decode_categorical(FREQS)
    assert coder.decoder(data).at_end()  # it cannot tell


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda e: e.encode(SYMBOLS, INDEXES + 2, TABLES), "table index 2 out of range"),
        (lambda e: e.encode(SYMBOLS, -INDEXES - 1, TABLES), "table index -1 out of range"),
        (lambda e: e.encode(SYMBOLS[:-1], INDEXES, TABLES), "differ in size"),
        (lambda e: e.encode(SYMBOLS.astype(float), INDEXES, TABLES), "integer array"),
        (lambda e: e.encode(SYMBOLS.astype(np.int64) + 2**31, INDEXES, TABLES), "int32 range"),
        (lambda e: e.encode_categorical(CATS + 6, FREQS), "out of range"),
        (lambda e: e.encode_categorical(CATS[:-1], FREQS), "rows of freqs"),
        (lambda e: e.encode_categorical(CATS, -FREQS), "negative frequency"),
        (lambda e: e.encode_categorical(CATS, FREQS * 0), "sum to zero"),
        (lambda e: e.encode_categorical(np.zeros(2, np.int32), np.array([[0, 1], [1, 0]])), "zero frequency"),
        (lambda e: e.encode_categorical(np.zeros(1, np.int32), np.ones((1, 2**20 + 1), np.int32)), "categories"),
        (lambda e: e.encode_categorical(np.zeros(3, np.int32), np.ones(3, np.int32)), "2-D"),
    ],
)
def test_bad_encoder_arguments_leave_encoder_usable(call, message):
    encoder = CodecLabStreamEncoder(2)
    encoder.encode(SYMBOLS, INDEXES, TABLES)
    with pytest.raises(ValueError, match=message):
        call(encoder)
    encoder.encode_categorical(CATS, FREQS)
    assert encoder.finish() == valid_stream(2)


def test_bad_decoder_arguments():
    decoder = CodecLabStreamDecoder(valid_stream())
    with pytest.raises(ValueError, match="table index 5 out of range"):
        decoder.decode(INDEXES + 5, TABLES)
    np.testing.assert_array_equal(decoder.decode(INDEXES, TABLES), SYMBOLS)  # checked before decoding
    decoder = CodecLabStreamDecoder(valid_stream())
    with pytest.raises(ValueError, match="sum to zero"):
        decoder.decode_categorical(np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError, match="unusable"):
        decoder.decode(INDEXES, TABLES)
    with pytest.raises(ValueError, match="threads"):
        CodecLabCoder(threads=0)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "bad header"),
        (b"\x00\x01", "bad header"),
        (b"\xc1\x00", "lane count"),
        (b"\xc1\x41", "lane count"),
        (b"\xc1\x01\x01", "truncated stream header"),
        (b"\xc1\x01\x01" + b"\xff" * 12, "overflows"),
        (b"\xc1\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "length"),
        (b"\xc1\x01\x03\x08", "state count"),
        (b"\xc1\x01\x01\x0c" + b"\x00" * 12, "invalid coder state"),
        (b"\xc1\x01\x01\x08" + b"\xff" * 8, "invalid coder state"),
        (b"\xc1\x01\x01\x08" + (2**31).to_bytes(8, "little") + b"\x00", "trailing"),
        (b"\xc1\x01\x00\x00", None),
    ],
)
def test_malformed_headers(data, message):
    if message is None:
        with pytest.raises(ValueError, match="empty lane"):
            CodecLabStreamDecoder(data).decode(INDEXES, TABLES)
        return
    with pytest.raises(ValueError, match=message):
        CodecLabStreamDecoder(data)


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def test_truncated_words_are_detected():
    data = valid_stream()
    lane_len = len(data) - 3 - len(varint(len(data)))
    assert data[: 3 + len(varint(lane_len))] == data[:3] + varint(lane_len)
    body = data[3 + len(varint(lane_len)) :]
    for cut in range(4, lane_len - 8, 4):  # consistent header, words missing at the end
        decoder = CodecLabStreamDecoder(data[:3] + varint(lane_len - cut) + body[:-cut])
        with pytest.raises(ValueError, match="truncated"):
            _decode_both_groups(decoder)


def _decode_both_groups(decoder) -> None:
    decoder.decode(INDEXES, TABLES)
    decoder.decode_categorical(FREQS)


def test_intact_stream_decodes():
    for threads in (1, 2):
        decoder = CodecLabStreamDecoder(valid_stream(threads))
        np.testing.assert_array_equal(decoder.decode(INDEXES, TABLES), SYMBOLS)
        np.testing.assert_array_equal(decoder.decode_categorical(FREQS), CATS)
        assert decoder.at_end()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    decode_all(data)
    decode_all(b"\xc1" + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(threads=st.integers(1, 2), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=6),
       cut=st.integers(0, 40), tail=st.binary(max_size=8))
def test_fuzz_mutated_streams(threads, flips, cut, tail):
    data = bytearray(valid_stream(threads))
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    data = data[: max(0, len(data) - cut)] + tail
    decode_all(bytes(data))
