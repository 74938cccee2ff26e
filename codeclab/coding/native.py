"""CodecLab's own entropy coder: a multi-lane, interleaved rANS coder in C++.

The coder (``codeclab.coding._native``, built from ``csrc/`` by ``setup.py``) codes two
kinds of symbol groups into one byte string, in any order, decoded in the same order:

* **Indexed static tables** (:meth:`CodecLabStreamEncoder.encode`): compressai's convention,
  see :mod:`.coders`. Symbol ``v`` with table ``t`` maps to entry ``e = v - offsets[t]``.
  For ``0 <= e < lengths[t] - 2`` it is coded with probability
  ``(cdfs[t, e+1] - cdfs[t, e]) / 2**16``. Otherwise the escape entry ``m = lengths[t] - 2``
  is coded, followed by ``raw = -2e-1`` (``e < 0``) or ``raw = 2(e-m)`` (``e >= m``): first
  its bit length ``b`` (uniform over 64 values, 6 bits), then its ``b - 1`` bits below the
  leading one (uniform, in pieces of at most 16 bits). Every int32 value round-trips exactly.
* **Categorical distributions** (:meth:`CodecLabStreamEncoder.encode_categorical`): one row of
  ``K`` non-negative integer counts per symbol. A row whose sum is a power of two
  ``<= 2**24`` is used exactly (scaled by a shift). Any other row is normalised to ``2**24``
  with integer arithmetic only: with ``b = total.bit_length()`` and
  ``m = 2**(24 + b) // total``, every non-zero count becomes ``max(1, (f * m) >> b)``
  (``~ f * 2**24 / total``), the deficit to ``2**24`` is added to the first non-zero entry and
  a surplus (only when many counts were raised to 1) is taken from entries in index order,
  none going below 1. Encoder and decoder run the same code, so the coded distribution is
  deterministic; a symbol whose count is zero cannot be coded (``ValueError``).

Math: rANS with a 64-bit state ``x`` in ``[2**31, 2**63)``, 24-bit probability precision
(16-bit table CDFs are shifted left by 8: the same probabilities) and 32-bit renormalisation
words. Coding ``(start, freq)`` maps ``x -> floor(x / freq) * 2**24 + x mod freq + start``;
the loss against ``-log2 p`` is about 1e-5 bit per symbol plus 8 bytes per state at the end.
The decoder finds a table symbol from its 16-bit slot with a per-table lookup of 1024
buckets (64 slots each) and a short forward scan; a categorical symbol with a linear scan.

Chunks ("lanes"): an encoder built with ``threads = T`` has ``T`` independent rANS streams.
A group of ``n`` symbols is cut into ``P = clamp(n // 16384, 1, T)`` contiguous parts,
``[n*c//P, n*(c+1)//P)`` going to lane ``c``, and the parts are coded on ``P`` threads. A lane
whose estimated size is at least 2**18 bits interleaves 4 states (symbol ``c`` of the lane
uses state ``c % 4``; ~1.7x faster), a smaller one uses 1 state (24 bytes less to flush).
Stream layout::

    0xC1 | L (1 byte) | L x (K: 1 byte, lane byte length: LEB128 varint) | lane 0 | ... | lane L-1
    lane = K little-endian uint64 states, then little-endian uint32 words

The decoder reads ``L`` from the stream and recomputes the same parts, so a decoder with any
number of threads (one included) decodes what any encoder wrote; its threads only decide how
many lanes it decodes at once.

Exact and safe: decoding never reads outside the byte string, every loop is bounded by the
group size, and all malformed input (corrupt or truncated streams, bad tables, table indexes
out of range, values that do not fit int32) raises ``ValueError`` with a one-line message;
after a decoding error the decoder refuses further calls. The GIL is released while coding;
numpy arrays are read in place (C-contiguous int32; other integer dtypes are range-checked
and converted).
"""

from __future__ import annotations

import numpy as np

from . import _native
from .coders import CODERS, CdfTables, EntropyCoder, StreamDecoder, StreamEncoder

__all__ = ["CodecLabCoder", "CodecLabStreamDecoder", "CodecLabStreamEncoder", "Int8Matrix", "is_codeclab_stream",
           "pmf_to_quantized_cdf"]

# The exact int8 product of the 8-bit integer layers, built into the same extension
# (csrc/int8_gemm.hpp; used by codeclab.entropy_models.integer.Int8Product).
Int8Matrix = _native.Int8Matrix

_INT32 = np.iinfo(np.int32)


def _int32(array, name: str) -> np.ndarray:
    """``array`` as a C-contiguous int32 numpy array, without a copy when it already is one."""
    array = np.asarray(array)
    if array.dtype != np.int32:
        if array.dtype.kind not in "iub":
            raise ValueError(f"{name} must be an integer array, got dtype {array.dtype}")
        if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
            raise ValueError(f"{name} has values outside the int32 range")
        array = array.astype(np.int32)
    return np.ascontiguousarray(array)


def _table_arrays(tables: CdfTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (_int32(tables.cdfs, "cdfs"), _int32(tables.lengths, "lengths").reshape(-1),
            _int32(tables.offsets, "offsets").reshape(-1))


def _freqs(freqs) -> np.ndarray:
    freqs = _int32(freqs, "freqs")
    if freqs.ndim != 2:
        raise ValueError(f"freqs must be 2-D [n, num_categories], got shape {freqs.shape}")
    return freqs


class CodecLabStreamEncoder(StreamEncoder):
    """Collects groups of symbols; :meth:`finish` codes them all and returns the stream.

    rANS codes in reverse, so groups are kept (8 bytes per symbol) until :meth:`finish`;
    :meth:`encode` already does the table look-ups and all validation. One encoder (or
    decoder) must not be used from two Python threads at once.

    Args:
      threads: number of lanes (independent chunks) and of coding threads, in [1, 64].
    """

    def __init__(self, threads: int = 1):
        self._encoder = _native.Encoder(int(threads))

    def encode(self, symbols, indexes, tables: CdfTables) -> None:
        """Appends a group coded with indexed tables.

        Args:
          symbols: integer array, any shape; every int32 value is allowed (escape-coded when
            outside its table's support).
          indexes: integer array of the same size: table of each symbol, in
            ``[0, tables.num_tables)``.
          tables: the integer CDF tables (:class:`.CdfTables`).
        """
        symbols, indexes = _int32(symbols, "symbols"), _int32(indexes, "indexes")
        if symbols.size != indexes.size:
            raise ValueError(f"symbols ({symbols.size}) and indexes ({indexes.size}) differ in size")
        self._encoder.encode(symbols.reshape(-1), indexes.reshape(-1), *_table_arrays(tables))

    def encode_categorical(self, symbols, freqs) -> None:
        """Appends a group of categorical symbols.

        Args:
          symbols: int array ``[n]``, ``0 <= symbols[i] < K`` with ``freqs[i, symbols[i]] > 0``.
          freqs: non-negative integer array ``[n, K]`` (``K <= 2**20``), one row of counts per
            symbol, each row summing to a positive value (normalised as in the module doc).
        """
        freqs = _freqs(freqs)
        symbols = _int32(symbols, "symbols").reshape(-1)
        if symbols.shape[0] != freqs.shape[0]:
            raise ValueError(f"{symbols.shape[0]} symbols but {freqs.shape[0]} rows of freqs")
        self._encoder.encode_categorical(symbols, freqs)

    def finish(self) -> bytes:
        """The stream of all groups so far; the encoder is empty again afterwards."""
        return self._encoder.finish()


class CodecLabStreamDecoder(StreamDecoder):
    """Decodes the groups of one stream, in the order they were encoded.

    Each call returns the next group, so a codec can compute the next group's tables or
    distributions from what it decoded so far. ``ValueError`` on any malformed input.

    Args:
      data: a stream written by :class:`CodecLabStreamEncoder` (any number of threads).
      threads: decoding threads (at most one per lane is used), in [1, 64].
    """

    def __init__(self, data: bytes, threads: int = 1):
        self._decoder = _native.Decoder(bytes(data), int(threads))

    def decode(self, indexes, tables: CdfTables) -> np.ndarray:
        """The next group coded with indexed tables: int32, shaped like ``indexes``."""
        indexes = _int32(indexes, "indexes")
        return self._decoder.decode(indexes, *_table_arrays(tables))

    def decode_categorical(self, freqs) -> np.ndarray:
        """The next categorical group: int32 ``[n]`` for ``freqs`` of shape ``[n, K]``."""
        return self._decoder.decode_categorical(_freqs(freqs))

    def at_end(self) -> bool:
        """Whether the whole stream was consumed and decoding ended in the encoder's initial
        states (always true after decoding every group of an intact stream)."""
        return self._decoder.at_end()


def pmf_to_quantized_cdf(pmf: np.ndarray, precision: int = 16) -> np.ndarray:
    """int32 CDF ``[n + 1]`` of a float32 pmf ``[n]`` (the last entry is usually the tail mass),
    computed as compressai 1.2.8 computes it (``csrc/quantized_cdf.hpp``); ``ValueError`` on a
    negative, non-finite or all-zero pmf."""
    return _native.pmf_to_quantized_cdf(np.ascontiguousarray(pmf, dtype=np.float32), int(precision))


def is_codeclab_stream(data: bytes) -> bool:
    """Whether ``data`` parses as a whole stream of this coder (another coder's stream almost never does)."""
    return bool(_native.is_codeclab_stream(bytes(data)))


@CODERS.register("codeclab")
class CodecLabCoder(EntropyCoder):
    """CodecLab's rANS coder (see the module docstring for the format).

    Args:
      threads: lanes and threads of its encoders, threads of its decoders. Streams do not
        depend on how many threads decode them.
    """

    def __init__(self, threads: int = 1):
        if not 1 <= int(threads) <= _native.MAX_LANES:
            raise ValueError(f"threads must be in [1, {_native.MAX_LANES}], got {threads}")
        self.threads = int(threads)

    def encoder(self) -> CodecLabStreamEncoder:
        return CodecLabStreamEncoder(self.threads)

    def decoder(self, data: bytes) -> CodecLabStreamDecoder:
        return CodecLabStreamDecoder(data, self.threads)
