"""Entropy coding: integer symbols + integer CDF tables <-> bytes. Imports numpy, not torch.

* :mod:`.coders`: the coder interface, :class:`~.coders.CdfTables`, the :data:`~.coders.CODERS`
  registry and the adapter to compressai's rANS (imported only when used).
* :mod:`.native`: the project's C++ rANS coder (``csrc/``) and the exact CDF quantisation.
"""

from . import native  # noqa: F401  (registers the "codeclab" coder)
from .coders import CODERS, DEFAULT_CODER, CdfTables, EntropyCoder, StreamDecoder, StreamEncoder, get_coder
from .native import pmf_to_quantized_cdf

__all__ = [
    "CODERS", "DEFAULT_CODER", "CdfTables", "EntropyCoder", "StreamDecoder", "StreamEncoder", "get_coder",
    "pmf_to_quantized_cdf",
]
