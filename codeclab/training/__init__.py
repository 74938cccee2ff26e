"""Lightning training of codecs: the rate-distortion module."""

from .module import RateDistortionModule

__all__ = ["RateDistortionModule"]
