"""Latent entropy models with context, built on the mean-scale hyperprior.

Each model is selected by name (the Hydra group ``entropy=...``) and combines with any
analysis/synthesis transform (see :class:`codeclab.codecs.S2LIC`):

* ``hyperprior``: :class:`.base.HyperpriorEntropyModel` (Minnen et al. 2018, no context)
* ``checkerboard``: :class:`.checkerboard.CheckerboardEntropyModel` (He et al. 2021)
* ``charm``: :class:`.channelwise.ChannelwiseEntropyModel` (Minnen & Singh 2020)
* ``acgc``: :class:`.acgc.ACGCEntropyModel` (S2LIC)
"""

from __future__ import annotations

from .acgc import ACGCEntropyModel, ChannelAttentionContext, GlobalInterAttention
from .base import HyperpriorEntropyModel, LatentEntropyModel, LatentStep, checkerboard_masks
from .channelwise import ChannelwiseEntropyModel, LatentResidualPrediction
from .checkerboard import CheckerboardEntropyModel, CheckerboardSpatialContext, code_checkerboard

ENTROPY_MODELS: dict[str, type[LatentEntropyModel]] = {
    cls.name: cls for cls in (HyperpriorEntropyModel, CheckerboardEntropyModel, ChannelwiseEntropyModel, ACGCEntropyModel)
}


def build_entropy_model(N: int, M: int, name: str, **options) -> LatentEntropyModel:
    """The entropy model registered as ``name`` for ``y`` with ``M`` and ``z`` with ``N`` channels."""
    if name not in ENTROPY_MODELS:
        raise ValueError(f"unknown entropy model {name!r}; available: {', '.join(ENTROPY_MODELS)}")
    return ENTROPY_MODELS[name](N, M, **options)


__all__ = [
    "ENTROPY_MODELS", "ACGCEntropyModel", "ChannelAttentionContext", "ChannelwiseEntropyModel",
    "CheckerboardEntropyModel", "CheckerboardSpatialContext", "GlobalInterAttention", "HyperpriorEntropyModel",
    "LatentEntropyModel", "LatentResidualPrediction", "LatentStep", "build_entropy_model", "checkerboard_masks",
    "code_checkerboard",
]
