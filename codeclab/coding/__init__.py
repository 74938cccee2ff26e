"""Entropy coding: integer symbols + integer CDF tables <-> bytes. Imports numpy, not torch.

* :mod:`.coders`: the coder interface, :class:`~.coders.CdfTables` and the :data:`~.coders.CODERS` registry.
* :mod:`.native`: the project's C++ rANS coder (``csrc/``) and the exact CDF quantisation.
* :mod:`.compressai_coder`: the checked adapter to compressai's rANS (compressai imported only when used).
"""

from . import compressai_coder, native  # noqa: F401  (register the "compressai" and "codeclab" coders)
from .coders import CODERS, DEFAULT_CODER, CdfTables, EntropyCoder, StreamDecoder, StreamEncoder, get_coder
from .native import pmf_to_quantized_cdf

__all__ = [
    "CODERS", "DEFAULT_CODER", "CdfTables", "EntropyCoder", "StreamDecoder", "StreamEncoder", "get_coder",
    "pmf_to_quantized_cdf",
]
