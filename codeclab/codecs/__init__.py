"""Assembled codecs: a transform plus entropy models behind the :class:`~.base.Codec` interface."""

from .base import Codec, CompressedImage
from .hyperprior import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from .registry import CODECS, build_codec, register_codec
from .s2lic import S2LIC
from .vqgan import VQGAN
from .walloc import WaLLoC

__all__ = [
    "CODECS", "Codec", "CompressedImage", "FactorizedPrior", "MeanScaleHyperprior", "ScaleHyperprior",
    "build_codec", "register_codec", "VQGAN", "S2LIC", "WaLLoC",
]
