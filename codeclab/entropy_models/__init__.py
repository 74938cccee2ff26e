"""Entropy models and the entropy coders under them.

* :mod:`.coders`: the coder interface, its registry and compressai's rANS adapter.
* :mod:`.context`: latent entropy models with context (hyperprior, checkerboard, ChARM, S2LIC's ACGC).
* :mod:`.vector_quantizer`, :mod:`.index_models`: VQ codebooks and the index models of the VQGAN codec.
"""

from .coders import CODERS, CdfTables, EntropyCoder, get_coder, register_coder
from . import native  # registers the "codeclab" coder

__all__ = ["CODERS", "CdfTables", "EntropyCoder", "get_coder", "register_coder"]
