"""Entropy models and the entropy coders under them.

* :mod:`.coders`: the coder interface, its registry and compressai's rANS adapter.
"""

from .coders import CODERS, CdfTables, EntropyCoder, get_coder, register_coder
from . import native  # registers the "codeclab" coder

__all__ = ["CODERS", "CdfTables", "EntropyCoder", "get_coder", "register_coder"]
