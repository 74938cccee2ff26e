"""Training: Lightning modules (:mod:`.rate_distortion`, :mod:`.vqgan`), losses that are not part
of a codec (:mod:`.losses`), the VQGAN codebook ladder (:mod:`.vqgan_ladder`) and the Hydra entry
point (:mod:`.run`). Nothing on the coding path imports this package."""

from .rate_distortion import RateDistortionModule

__all__ = ["RateDistortionModule"]
