"""Entropy coders: turn integer symbols into bytes given integer CDF tables.

Every codec codes its latents through the coder selected by name (``--coder`` when encoding;
the default is the project's C++ coder ``codeclab``, see :mod:`.native`; ``compressai`` is
compressai's rANS, kept for comparison and imported only when a file asks for it). The file
container records which coder wrote it. The coders all share compressai's table convention,
which the project's entropy models (:mod:`codeclab.entropy_models.factorized`,
:mod:`codeclab.entropy_models.gaussian`) build bit for bit as compressai does:

* ``cdfs``: int32 array ``[n_tables, max_len]``; row ``t`` holds a 16-bit-precision CDF of
  ``lengths[t]`` entries (``cdf[0] == 0``, ``cdf[lengths[t]-1] == 1 << 16``). The last symbol of
  each table is the escape symbol.
* ``lengths``: int32 ``[n_tables]``.
* ``offsets``: int32 ``[n_tables]``: symbol ``v`` coded with table ``t`` maps to table entry
  ``v - offsets[t]``; values outside ``[0, lengths[t] - 2)`` are escape-coded exactly.

Coding is exact: ``decode(encode(symbols)) == symbols`` for every int32 input, whatever the
tables, as long as both sides use the same tables (they are stored in the model file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..registry import Registry


@dataclass(frozen=True)
class CdfTables:
    """Integer CDF tables in compressai's layout (see the module docstring)."""

    cdfs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    @property
    def num_tables(self) -> int:
        return int(self.lengths.shape[0])


class StreamEncoder(ABC):
    """Accumulates groups of symbols, then writes one byte string."""

    @abstractmethod
    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> None: ...

    @abstractmethod
    def finish(self) -> bytes: ...


class StreamDecoder(ABC):
    """Decodes groups of symbols, in the order they were encoded, from one byte string.

    Lets a codec decode a group, compute the next group's table indexes in its network, and
    decode on (checkerboard and channel-wise context models).
    """

    @abstractmethod
    def decode(self, indexes: np.ndarray, tables: CdfTables) -> np.ndarray: ...


class EntropyCoder(ABC):
    """A named entropy coder (its :data:`CODERS` name). Subclasses supply a stream encoder and decoder."""

    registry_name: str

    @property
    def name(self) -> str:
        return self.registry_name

    @abstractmethod
    def encoder(self) -> StreamEncoder: ...

    @abstractmethod
    def decoder(self, data: bytes) -> StreamDecoder: ...

    def encode_with_indexes(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
        enc = self.encoder()
        enc.encode(symbols, indexes, tables)
        return enc.finish()

    def decode_with_indexes(self, data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
        return self.decoder(data).decode(indexes, tables)


def _as_list(array: np.ndarray) -> list[int]:
    return np.asarray(array, dtype=np.int32).reshape(-1).tolist()


class _CompressaiStreamEncoder(StreamEncoder):
    def __init__(self):
        from compressai.ans import BufferedRansEncoder

        self._encoder = BufferedRansEncoder()

    def encode(self, symbols, indexes, tables):
        self._encoder.encode_with_indexes(
            _as_list(symbols), _as_list(indexes), tables.cdfs.tolist(), _as_list(tables.lengths), _as_list(tables.offsets)
        )

    def finish(self) -> bytes:
        return self._encoder.flush()


class _CompressaiStreamDecoder(StreamDecoder):
    def __init__(self, data: bytes):
        from compressai.ans import RansDecoder

        from .native import is_codeclab_stream

        # compressai's decoder has no checks: a stream of the other coder would decode to garbage.
        if is_codeclab_stream(data):
            raise ValueError("the stream was written by the codeclab coder, not compressai's")

        self._decoder = RansDecoder()
        self._decoder.set_stream(data)

    def decode(self, indexes, tables):
        values = self._decoder.decode_stream(
            _as_list(indexes), tables.cdfs.tolist(), _as_list(tables.lengths), _as_list(tables.offsets)
        )
        return np.asarray(values, dtype=np.int32).reshape(np.shape(indexes))


CODERS = Registry("entropy coder")
DEFAULT_CODER = "codeclab"


def get_coder(name: str | None = None) -> EntropyCoder:
    """A new instance of the coder registered under ``name`` (default: :data:`DEFAULT_CODER`)."""
    return CODERS.build(name or DEFAULT_CODER)


@CODERS.register("compressai")
class CompressaiCoder(EntropyCoder):
    """compressai's rANS coder (``compressai.ans``), kept for comparison.

    It has no checks of its own against hostile streams; the container's checksum
    (:mod:`codeclab.formats.container`) is what keeps corrupted files away from it.
    """

    def encoder(self) -> StreamEncoder:
        return _CompressaiStreamEncoder()

    def decoder(self, data: bytes) -> StreamDecoder:
        return _CompressaiStreamDecoder(data)

