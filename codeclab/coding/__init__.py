"""Entropy coding: integer symbols + integer CDF tables <-> bytes. Imports numpy, not torch.

* :mod:`.coders`: the coder interface, :class:`~.coders.CdfTables` and the :data:`~.coders.CODERS`
  registry with each coder's wire id (standard library only: file headers read it).
* :mod:`.native`: the project's C++ rANS coder (``csrc/``), the exact CDF quantisation, and the
  8-bit integer layers' exact int8 product (:class:`~.native.Int8Matrix`, built into the same extension).
* :mod:`.compressai_coder`: the checked adapter to compressai's rANS (compressai imported only when used).
"""

from .coders import CODERS, DEFAULT_CODER, CdfTables, EntropyCoder, StreamDecoder, StreamEncoder


def get_coder(name: str | None = None) -> EntropyCoder:
    """A new instance of the coder registered under ``name`` (default: :data:`DEFAULT_CODER`)."""
    from . import compressai_coder, native  # noqa: F401  (imported on first use; they register "compressai" and "codeclab")

    return CODERS.build(name or DEFAULT_CODER)


__all__ = ["CODERS", "DEFAULT_CODER", "CdfTables", "EntropyCoder", "StreamDecoder", "StreamEncoder", "get_coder"]
