"""The transform registry and the pair of networks a transform builder returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from ..registry import Registry

TRANSFORMS = Registry("transform")


class TransformPair(NamedTuple):
    """``g_a``: image -> latent, ``g_s``: latent -> image, ``stride``: latent downsampling."""

    g_a: nn.Module
    g_s: nn.Module
    stride: int
