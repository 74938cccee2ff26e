"""Entropy coders: turn integer symbols into bytes given integer CDF tables.

Every compress/decompress call takes its coder as an argument (``--coder`` when encoding; the
default is the project's C++ coder ``codeclab``, see :mod:`.native`; ``compressai`` is
compressai's rANS, kept for comparison, see :mod:`.compressai_coder`). Files record the coder
that wrote them by its wire id (:data:`CODERS`), and decoders use that one. The coders all share
compressai's table convention, which the project's entropy models (:mod:`codeclab.entropy_models.factorized`,
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
from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    import numpy as np


CDF_TOTAL = 1 << 16
# Symbols are int32 and coded as ``symbol - offset``: offsets this small keep that in range for
# every symbol a latent of magnitude below 2^30 produces.
OFFSET_LIMIT = 1 << 30


@dataclass(frozen=True)
class CdfTables:
    """Integer CDF tables in compressai's layout (see the module docstring)."""

    cdfs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    @property
    def num_tables(self) -> int:
        return int(self.lengths.shape[0])

    def check(self) -> None:
        """``ValueError`` (one line) unless every table is a 16-bit CDF of length in
        ``[2, max_len]`` that starts at 0, ends at ``1 << 16`` and has no zero-frequency symbol:
        the rules the C++ coder enforces on its own, for coders that trust their tables."""
        import numpy as np  # here, not at the top: reading a file's header imports this module, not numpy

        cdfs, lengths, offsets = (np.asarray(a) for a in (self.cdfs, self.lengths, self.offsets))
        if cdfs.ndim != 2 or lengths.ndim != 1 or offsets.ndim != 1:
            raise ValueError("cdfs must be 2-D [n_tables, max_length], lengths and offsets 1-D")
        if not len(cdfs) == len(lengths) == len(offsets) or not len(cdfs):
            raise ValueError(f"lengths and offsets must have one entry per cdf table ({len(cdfs)}), and there must be one")
        if any(a.dtype.kind not in "iu" for a in (cdfs, lengths, offsets)):
            raise ValueError("cdf tables must be integer arrays")
        if lengths.min() < 2 or lengths.max() > cdfs.shape[1]:
            raise ValueError(f"a cdf table's length is outside [2, {cdfs.shape[1]}]")
        if np.abs(offsets.astype(np.int64)).max() > OFFSET_LIMIT:
            raise ValueError(f"a cdf table's offset is outside +-{OFFSET_LIMIT}")
        rows = np.arange(len(cdfs))
        if (cdfs[:, 0] != 0).any() or (cdfs[rows, lengths - 1] != CDF_TOTAL).any():
            raise ValueError(f"cdf tables must start at 0 and end at {CDF_TOTAL}")
        inside = np.arange(1, cdfs.shape[1]) < lengths[:, None]
        if (np.diff(cdfs.astype(np.int64), axis=1)[inside] <= 0).any():
            raise ValueError("a cdf table is not strictly increasing (non-monotone or zero-frequency symbol)")


class StreamEncoder(ABC):
    """Accumulates groups of symbols, then writes one byte string."""

    @abstractmethod
    def encode(self, symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> None:
        """Appends ``symbols`` coded with the tables ``indexes`` points at."""

    @abstractmethod
    def encode_categorical(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        """Appends ``symbols[i]`` coded with the counts ``freqs[i]`` (VQ indexes, mixture components)."""

    @abstractmethod
    def finish(self) -> bytes: ...


class StreamDecoder(ABC):
    """Decodes groups of symbols, in the order they were encoded, from one byte string.

    Lets a codec decode a group, compute the next group's table indexes in its network, and
    decode on (checkerboard and channel-wise context models).
    """

    @abstractmethod
    def decode(self, indexes: np.ndarray, tables: CdfTables) -> np.ndarray: ...

    @abstractmethod
    def decode_categorical(self, freqs: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def at_end(self) -> bool:
        """``False`` when the stream provably did not end where the encoder began (a damaged
        stream, or other tables than the encoder's); a coder that cannot tell answers ``True``."""


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


# The byte each coder is recorded by in image and video files: stable, never reused.
CODERS = Registry("entropy coder", wire_ids={"codeclab": 0, "compressai": 1})
DEFAULT_CODER = "codeclab"
