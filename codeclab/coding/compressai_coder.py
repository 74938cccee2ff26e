"""compressai's rANS coder (``compressai.ans``, imported only when a file asks for it), kept for
comparison with the project's own coder (:mod:`.native`).

compressai's C++ trusts its inputs: tables with a zero-frequency symbol divide by zero, table
indexes out of range read out of bounds, symbols 2^30 away from their table loop forever. This adapter therefore checks the tables
(:meth:`.CdfTables.check`, the rules the native coder applies in C++), the indexes and the symbols before
every call, and refuses in one line what compressai cannot do: categorical symbols (VQ indexes,
mixture components) and the end-of-stream check (it cannot tell, so :meth:`at_end` is ``True``;
the container's checksum is what keeps corrupted files away from it). Not covered: its decoder
has no bounds on its reads, so a crafted stream with a recomputed checksum can make it read past
the stream's end; decode untrusted files with the project's coder.
"""

from __future__ import annotations

import numpy as np

from ..errors import CodecLabError
from .coders import CODERS, CdfTables, EntropyCoder, StreamDecoder, StreamEncoder
from .native import is_codeclab_stream

ESCAPE_LIMIT = 1 << 30


def _refuse_categorical() -> None:
    raise CodecLabError("the compressai coder cannot code categorical symbols (this model's VQ indexes or "
                        "mixture components); use --coder codeclab")


def _as_list(array) -> list[int]:
    return np.asarray(array, dtype=np.int64).reshape(-1).tolist()


def _table_lists(tables: CdfTables) -> tuple[list, list[int], list[int]]:
    """``(cdfs, lengths, offsets)`` as compressai takes them, once the tables passed the checks."""
    tables.check()
    return np.asarray(tables.cdfs).tolist(), _as_list(tables.lengths), _as_list(tables.offsets)


def _index_list(indexes, tables: CdfTables) -> list[int]:
    indexes = np.asarray(indexes)
    if indexes.size and (indexes.min() < 0 or indexes.max() >= tables.num_tables):
        raise ValueError(f"table indexes outside [0, {tables.num_tables})")
    return _as_list(indexes)


class CompressaiStreamEncoder(StreamEncoder):
    def __init__(self):
        from compressai.ans import BufferedRansEncoder

        self._encoder = BufferedRansEncoder()

    def encode(self, symbols, indexes, tables):
        cdfs, lengths, offsets = _table_lists(tables)
        symbols = np.asarray(symbols)
        if symbols.size != np.size(indexes):
            raise ValueError(f"symbols ({symbols.size}) and indexes ({np.size(indexes)}) differ in size")
        index_list = _index_list(indexes, tables)
        # compressai doubles ``symbol - offset`` in int32 to escape-code it: past 2^30 that
        # overflows and its bit-length loop never ends.
        values = symbols.astype(np.int64).reshape(-1) - np.asarray(tables.offsets, dtype=np.int64)[index_list]
        if values.size and np.abs(values).max() >= ESCAPE_LIMIT:
            raise ValueError("symbols too far from their tables for the compressai coder (|symbol - offset| >= 2^30); "
                             "use --coder codeclab")
        self._encoder.encode_with_indexes(_as_list(symbols), index_list, cdfs, lengths, offsets)

    def encode_categorical(self, symbols, freqs):
        _refuse_categorical()

    def finish(self) -> bytes:
        return self._encoder.flush()


class CompressaiStreamDecoder(StreamDecoder):
    def __init__(self, data: bytes):
        from compressai.ans import RansDecoder

        # compressai's decoder has no checks: a stream of the other coder would decode to garbage.
        if is_codeclab_stream(data):
            raise ValueError("the stream was written by the codeclab coder, not compressai's")
        self._decoder = RansDecoder()
        self._decoder.set_stream(data)

    def decode(self, indexes, tables):
        cdfs, lengths, offsets = _table_lists(tables)
        values = self._decoder.decode_stream(_index_list(indexes, tables), cdfs, lengths, offsets)
        return np.asarray(values, dtype=np.int32).reshape(np.shape(indexes))

    def decode_categorical(self, freqs):
        _refuse_categorical()

    def at_end(self) -> bool:
        return True


@CODERS.register("compressai")
class CompressaiCoder(EntropyCoder):
    """compressai's rANS coder behind this project's checks (see the module docstring)."""

    def encoder(self) -> StreamEncoder:
        return CompressaiStreamEncoder()

    def decoder(self, data: bytes) -> StreamDecoder:
        return CompressaiStreamDecoder(data)
