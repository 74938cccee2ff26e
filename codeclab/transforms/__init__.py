"""Analysis/synthesis transforms, selected by name from :data:`TRANSFORMS`.

A registered transform is a builder returning a :class:`TransformPair`: ``g_a`` maps
``[B, 3, H, W]`` images in [0, 1] to a latent ``[B, M, H/s, W/s]``, ``g_s`` maps it back, and
``stride`` is ``s``. Registered: ``cnn`` (:mod:`.cnn`), ``cheng2020`` (:mod:`.cheng`), ``elic`` (:mod:`.elic`),
``mcquic`` (:mod:`.mcquic`), ``mlicpp`` (:mod:`.mlicpp`), ``mlicv2`` (:mod:`.mlicv2`),
``swinv2`` (:mod:`.swin`), ``walloc`` (:mod:`.wavelet`), ``vqgan`` (:mod:`.vqgan`).
Layers shared by them live in :mod:`.layers`.
"""

from .base import TRANSFORMS, TransformPair
from . import cheng, cnn, elic, mcquic, mlicpp, mlicv2, swin, vqgan, wavelet  # noqa: F401  (register the transforms)

__all__ = ["TRANSFORMS", "TransformPair"]
