"""CodecLab's rANS coder: exactness, compatibility with compressai, chunking, step-wise decoding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeclab.coding import coders, get_coder, native
from codeclab.coding.coders import CdfTables
from codeclab.coding.native import CodecLabCoder, CodecLabStreamDecoder, CodecLabStreamEncoder

INT32_MIN, INT32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max
REPO = Path(__file__).resolve().parents[2]


def tables_from_counts(counts: list[np.ndarray], offsets) -> CdfTables:
    """16-bit tables whose non-escape symbols have the given positive counts; the escape
    symbol gets what is left of 2**16 (at least 1)."""
    max_len = max(len(c) for c in counts) + 2
    cdfs = np.zeros((len(counts), max_len), dtype=np.int32)
    lengths = np.zeros(len(counts), dtype=np.int32)
    for t, c in enumerate(counts):
        c = np.asarray(c, dtype=np.int64)
        assert c.min() >= 1 and c.sum() < 2**16
        cdfs[t, 1 : len(c) + 1] = np.cumsum(c)
        cdfs[t, len(c) + 1] = 2**16
        cdfs[t, len(c) + 2 :] = 2**16  # padding past the table's length is never read
        lengths[t] = len(c) + 2
    return CdfTables(cdfs, lengths, np.asarray(offsets, dtype=np.int32))


@pytest.fixture(scope="module")
def gaussian():
    from codeclab.entropy_models.gaussian import GaussianConditional

    gc = GaussianConditional()
    gc.update_tables()
    rng = np.random.default_rng(0)
    shape = (2, 64, 24, 16)
    scales = torch.from_numpy(np.exp(rng.normal(0, 1.3, shape)).astype(np.float32)).clamp(0.11, 256)
    y = scales * torch.randn(shape, generator=torch.Generator().manual_seed(0))
    symbols = torch.round(y).numpy().astype(np.int32)
    indexes = gc.table_indexes(scales).numpy().astype(np.int32)
    return gc.tables(), symbols, indexes


def roundtrip(symbols, indexes, tables, enc_threads=1, dec_threads=1):
    data = CodecLabCoder(enc_threads).encode_with_indexes(symbols, indexes, tables)
    decoder = CodecLabCoder(dec_threads).decoder(data)
    out = decoder.decode(indexes, tables)
    assert decoder.at_end()
    return data, out


def test_registered():
    assert coders.CODERS["codeclab"] is CodecLabCoder
    assert isinstance(get_coder("codeclab"), CodecLabCoder)


@pytest.mark.parametrize("enc_threads,dec_threads", [(1, 1), (2, 1), (2, 2), (3, 2), (4, 1)])
def test_gaussian_roundtrip_any_threads(gaussian, enc_threads, dec_threads):
    tables, symbols, indexes = gaussian
    _, out = roundtrip(symbols, indexes, tables, enc_threads, dec_threads)
    assert out.dtype == np.int32 and out.shape == symbols.shape
    np.testing.assert_array_equal(out, symbols)


def test_same_symbols_as_compressai_and_close_size(gaussian):
    tables, symbols, indexes = gaussian
    reference = get_coder("compressai")
    theirs = reference.decode_with_indexes(reference.encode_with_indexes(symbols, indexes, tables), indexes, tables)
    data, ours = roundtrip(symbols, indexes, tables)
    np.testing.assert_array_equal(ours, theirs)
    ref_size = len(reference.encode_with_indexes(symbols, indexes, tables))
    assert len(data) <= ref_size * 1.003 + 64


def lane_headers(data: bytes) -> list[tuple[int, int]]:
    """(states, byte length) of each lane, parsed from the stream header."""
    lanes, pos, out = data[1], 2, []
    for _ in range(lanes):
        states, length, shift = data[pos], 0, 0
        pos += 1
        while True:
            length |= (data[pos] & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if data[pos - 1] < 0x80:
                break
        out.append((states, length))
    assert pos + sum(length for _, length in out) == len(data)
    return out


def test_chunked_stream_layout_and_single_thread_decode(gaussian):
    tables, symbols, indexes = gaussian  # 49152 symbols: 3 parts of 16384
    data = CodecLabCoder(4).encode_with_indexes(symbols, indexes, tables)
    assert data[0] == 0xC1
    layout = lane_headers(data)
    assert [states for states, _ in layout] == [1, 1, 1, 0]  # 3 parts, each too small to interleave
    out = CodecLabStreamDecoder(data, threads=1).decode(indexes, tables)
    np.testing.assert_array_equal(out, symbols)
    small = CodecLabCoder(4).encode_with_indexes(symbols[:1, :4], indexes[:1, :4], tables)
    assert [states for states, _ in lane_headers(small)] == [1, 0, 0, 0]


def test_interleaved_lanes_with_escapes_and_odd_group_sizes():
    """Lanes above 2^18 estimated bits use 4 interleaved states; groups of odd sizes make the
    state rotation cross group boundaries, escapes sit anywhere."""
    rng = np.random.default_rng(9)
    tables = tables_from_counts([np.full(200, 300), np.array([60000, 5, 5])], offsets=[-100, 0])
    n = 150001
    indexes = (rng.random(n) < 0.9).astype(np.int32) ^ 1  # mostly the wide table
    symbols = rng.integers(-100, 100, n).astype(np.int32)
    wild = rng.random(n) < 0.01
    symbols[wild] = rng.integers(INT32_MIN, INT32_MAX, wild.sum(), endpoint=True)
    cuts = [0, 3, 70001, 70002, 120003, n]
    for threads in (1, 2):
        encoder = CodecLabStreamEncoder(threads)
        for a, b in zip(cuts[:-1], cuts[1:]):
            encoder.encode(symbols[a:b], indexes[a:b], tables)
        data = encoder.finish()
        assert all(states in (0, 4) for states, _ in lane_headers(data))
        for dec_threads in (1, 2):
            decoder = CodecLabStreamDecoder(data, dec_threads)
            for a, b in zip(cuts[:-1], cuts[1:]):
                np.testing.assert_array_equal(decoder.decode(indexes[a:b], tables), symbols[a:b])
            assert decoder.at_end()


def test_extreme_values_escape_exactly():
    tables = tables_from_counts([np.array([1, 65000, 1]), np.array([1]), np.array([30000] * 2)],
                                offsets=[-1, INT32_MAX, INT32_MIN])
    values = np.array([INT32_MIN, INT32_MAX, 0, -1, 1, 2, 3, -2, 2**30, -(2**30)], dtype=np.int32)
    symbols = np.repeat(values, 3)
    indexes = np.tile(np.arange(3, dtype=np.int32), len(values))
    _, out = roundtrip(symbols, indexes, tables)
    np.testing.assert_array_equal(out, symbols)


def test_only_escape_table():
    # length 2: the table holds only the escape symbol, every value is escape-coded.
    tables = CdfTables(np.array([[0, 65536]], np.int32), np.array([2], np.int32), np.array([5], np.int32))
    symbols = np.array([5, 6, 4, INT32_MAX, INT32_MIN], np.int32)
    _, out = roundtrip(symbols, np.zeros(5, np.int32), tables)
    np.testing.assert_array_equal(out, symbols)


def test_empty_and_single():
    tables = tables_from_counts([np.array([100, 200])], offsets=[0])
    empty = np.zeros((0, 3), np.int32)
    data, out = roundtrip(empty, empty, tables)
    assert out.shape == (0, 3) and len(data) < 8
    for value in (0, 1, 7, INT32_MIN):
        _, out = roundtrip(np.array([value], np.int32), np.array([0], np.int32), tables)
        assert out.tolist() == [value]
    encoder = CodecLabStreamEncoder()
    decoder = CodecLabStreamDecoder(encoder.finish())
    assert decoder.at_end()


def test_step_by_step_mixed_groups(gaussian):
    """Each group's tables or distributions depend on the previous decoded group, as in
    checkerboard and autoregressive context models; table and categorical groups alternate."""
    tables, symbols, _ = gaussian
    flat = symbols.reshape(-1)
    rng = np.random.default_rng(3)
    groups = [flat[i : i + n] for i, n in zip(range(0, 40000, 10000), (10000, 1, 0, 7000))]

    def next_indexes(previous, n):
        return ((np.abs(previous).sum() + np.arange(n)) % tables.num_tables).astype(np.int32)

    def next_freqs(previous, n):
        seed = int(np.abs(previous).sum()) % 1000
        return np.random.default_rng(seed).integers(0, 50, (n, 9)) + (np.arange(9) == 4) * 1

    for threads in (1, 2):
        encoder, previous, plan = CodecLabCoder(threads).encoder(), np.zeros(1, np.int32), []
        for group in groups:
            idx = next_indexes(previous, len(group))
            encoder.encode(group, idx, tables)
            freqs = next_freqs(group, len(group) // 2 + 1)
            cats = np.array([rng.choice(np.flatnonzero(row)) for row in freqs], np.int32)
            encoder.encode_categorical(cats, freqs)
            plan.append((group, cats))
            previous = cats
        data = encoder.finish()
        for dec_threads in (1, 2):
            decoder, previous = CodecLabCoder(dec_threads).decoder(data), np.zeros(1, np.int32)
            for group, cats in plan:
                got = decoder.decode(next_indexes(previous, len(group)), tables)
                np.testing.assert_array_equal(got, group)
                got_cats = decoder.decode_categorical(next_freqs(got, len(got) // 2 + 1))
                np.testing.assert_array_equal(got_cats, cats)
                previous = got_cats
            assert decoder.at_end()


def test_large_categorical_chunked_matches_single_thread():
    rng = np.random.default_rng(5)
    n, k = 40000, 33
    freqs = rng.integers(0, 1000, (n, k)).astype(np.int64)
    freqs[:, 0] += 1
    freqs[: n // 2] *= 2**14  # totals above 2^24, some rows with a power-of-two total below
    freqs[::7] = 0
    freqs[::7, ::4] = 1 << 13
    symbols = np.array([rng.choice(np.flatnonzero(r)) for r in freqs], np.int32)
    for threads in (1, 3):
        encoder = CodecLabStreamEncoder(threads)
        encoder.encode_categorical(symbols, freqs)
        data = encoder.finish()
        np.testing.assert_array_equal(CodecLabStreamDecoder(data, 1).decode_categorical(freqs), symbols)


def test_categorical_extreme_probabilities():
    k = 1024
    freqs = np.ones((4, k), np.int64)
    freqs[:, 3] = 2**31 - 1  # every other symbol gets the minimum probability 2^-24
    symbols = np.array([3, 0, k - 1, 500], np.int32)
    encoder = CodecLabStreamEncoder()
    encoder.encode_categorical(symbols, freqs)
    data = encoder.finish()
    assert 8 * len(data) < 3 * 24 + 100
    np.testing.assert_array_equal(CodecLabStreamDecoder(data).decode_categorical(freqs), symbols)


def test_fresh_process_decodes_and_reencodes_identically(gaussian, tmp_path):
    tables, symbols, indexes = gaussian
    data = CodecLabCoder(2).encode_with_indexes(symbols, indexes, tables)
    np.savez(tmp_path / "in.npz", cdfs=tables.cdfs, lengths=tables.lengths, offsets=tables.offsets,
             indexes=indexes, symbols=symbols, data=np.frombuffer(data, np.uint8))
    script = textwrap.dedent(
        """
        import sys, numpy as np
        from codeclab.coding.coders import CdfTables
        from codeclab.coding.native import CodecLabCoder
        d = np.load(sys.argv[1])
        tables = CdfTables(d["cdfs"], d["lengths"], d["offsets"])
        out = CodecLabCoder(1).decode_with_indexes(d["data"].tobytes(), d["indexes"], tables)
        again = CodecLabCoder(2).encode_with_indexes(d["symbols"], d["indexes"], tables)
        np.savez(sys.argv[2], out=out, again=np.frombuffer(again, np.uint8))
        """
    )
    package_root = Path(native.__file__).resolve().parents[2]  # the codeclab this test imported
    env = dict(os.environ, PYTHONPATH=str(package_root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, env=env, cwd=REPO, timeout=120)
    result = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(result["out"], symbols)
    assert result["again"].tobytes() == data


def test_numpy_inputs_in_place_and_other_dtypes(gaussian):
    tables, symbols, indexes = gaussian
    data, _ = roundtrip(symbols, indexes, tables)
    assert CodecLabCoder().encode_with_indexes(symbols.astype(np.int64), indexes.astype(np.int16), tables) == data
    out = CodecLabCoder().decode_with_indexes(data, torch.from_numpy(indexes.astype(np.int64)), tables)
    np.testing.assert_array_equal(out, symbols)
    transposed = np.asfortranarray(symbols)
    assert CodecLabCoder().encode_with_indexes(transposed, np.asfortranarray(indexes), tables) == data


# ------------------------------------------------------------------------------------------
# Property tests

counts_strategy = st.lists(
    st.lists(st.one_of(st.integers(1, 3), st.integers(1, 65000)), min_size=1, max_size=40),
    min_size=1, max_size=5,
).map(lambda rows: [np.minimum(np.array(r), np.maximum(1, (65535 - len(r)) // len(r))) for r in rows])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(counts=counts_strategy, data=st.data())
def test_property_tables_roundtrip(counts, data):
    n_tables = len(counts)
    offsets = data.draw(st.lists(st.integers(INT32_MIN, INT32_MAX) | st.integers(-50, 50),
                                 min_size=n_tables, max_size=n_tables))
    tables = tables_from_counts(counts, offsets)
    n = data.draw(st.integers(0, 300))
    indexes = np.array(data.draw(st.lists(st.integers(0, n_tables - 1), min_size=n, max_size=n)), np.int32)
    near = [int(np.clip(offsets[i] + d, INT32_MIN, INT32_MAX))
            for i, d in zip(indexes, data.draw(st.lists(st.integers(-3, 45), min_size=n, max_size=n)))]
    wild = data.draw(st.lists(st.integers(INT32_MIN, INT32_MAX), min_size=n, max_size=n))
    pick = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    symbols = np.array([w if p else v for v, w, p in zip(near, wild, pick)], np.int32)
    threads = data.draw(st.integers(1, 3))
    _, out = roundtrip(symbols, indexes, tables, threads, data.draw(st.integers(1, 3)))
    np.testing.assert_array_equal(out, symbols)


@settings(max_examples=150, deadline=None)
@given(k=st.integers(1, 70), n=st.integers(0, 60), mode=st.sampled_from(["small", "int32", "pow2", "sparse"]),
       seed=st.integers(0, 2**32 - 1), threads=st.integers(1, 2))
def test_property_categorical_roundtrip(k, n, mode, seed, threads):
    rng = np.random.default_rng(seed)
    if mode == "small":
        freqs = rng.integers(0, 6, (n, k))
    elif mode == "int32":
        freqs = rng.integers(0, INT32_MAX, (n, k), endpoint=True)
    elif mode == "pow2":  # exact rows: totals that are powers of two up to 2^24 and beyond
        freqs = np.zeros((n, k), np.int64)
        freqs[:, 0] = 2 ** rng.integers(0, 31, n)
    else:
        freqs = (rng.random((n, k)) < 0.05) * rng.integers(1, 2**16, (n, k))
    freqs[freqs.sum(axis=1) == 0, rng.integers(0, k)] = 1
    symbols = np.array([rng.choice(np.flatnonzero(r)) for r in freqs], np.int32)
    encoder = CodecLabStreamEncoder(threads)
    encoder.encode_categorical(symbols, freqs)
    decoder = CodecLabStreamDecoder(encoder.finish())
    np.testing.assert_array_equal(decoder.decode_categorical(freqs), symbols)
    assert decoder.at_end()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


@pytest.mark.parametrize("threads, n", [(1, 1000), (3, 3 * 16384 + 5), (2, 400_000)])
def test_stream_layout_is_the_documented_one(threads, n):
    """Parse a real stream by the layout in :mod:`codeclab.coding.native`'s docstring:
    0xC1 | L | L x (K, varint length) | lanes, a lane being K uint64 states then uint32 words."""
    tables = tables_from_counts([np.full(16, 4095)], [-8])  # about 4 bits per symbol
    symbols = np.random.default_rng(0).integers(-8, 8, n).astype(np.int32)
    encoder = CodecLabStreamEncoder(threads)
    encoder.encode(symbols, np.zeros(n, dtype=np.int32), tables)
    data = encoder.finish()
    assert data[0] == 0xC1
    lanes, pos, layout = data[1], 2, []
    for _ in range(lanes):
        states = data[pos]
        length, pos = _varint(data, pos + 1)
        layout.append((states, length))
    assert lanes == min(max(n // 16384, 1), threads)  # P = clamp(n // 16384, 1, T) parts
    assert sum(length for _, length in layout) == len(data) - pos  # the lanes fill the rest exactly
    for states, length in layout:
        assert states in (1, 4) and (length - 8 * states) % 4 == 0 and length >= 8 * states
    # 4 interleaved states from 2**18 estimated bits per lane (4 bits per symbol here).
    assert [states for states, _ in layout] == [4 if 4 * (n // lanes) >= 2**18 else 1] * lanes
    decoder = CodecLabStreamDecoder(data)
    np.testing.assert_array_equal(decoder.decode(np.zeros(n, dtype=np.int32), tables), symbols)
