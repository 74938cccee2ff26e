"""Checkerboard context (He et al., "Checkerboard Context Model for Efficient Learned Image
Compression", CVPR 2021).

The latent positions are split into a checkerboard: anchors (``(i + j)`` even) are coded from
the hyperprior alone, non-anchors from the hyperprior plus a 5x5 convolution over the decoded
anchors. Decoding takes two parallel network passes instead of ``h * w`` serial ones.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ENTROPY_MODELS, LatentStep, checkerboard_masks, entropy_parameters
from .hyperprior import HyperpriorEntropyModel
from .integer import at_positions, wide_inputs


class CheckerboardSpatialContext(nn.Module):
    """Spatial context of the non-anchors from the anchors, ``[B, C, h, w] -> [B, out, h, w]``.

    A plain 5x5 convolution applied to a latent whose non-anchor positions are zero: at a
    non-anchor position it sees only anchors, which is the masked convolution of He et al.
    Callers pass exactly the tensor the decoder has (decoded anchors, zeros elsewhere), so
    encoder and decoder evaluate it on identical inputs.
    """

    def __init__(self, channels: int, out_channels: int, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, anchors_only: torch.Tensor) -> torch.Tensor:
        return self.conv(anchors_only)


def code_checkerboard(
    y: torch.Tensor | None,
    features: torch.Tensor,
    step: LatentStep,
    parameters: nn.Module,
    spatial: CheckerboardSpatialContext,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Two-pass checkerboard coding of ``y`` ``[B, C, h, w]`` (a whole latent or one slice).

    Pass 1: ``(sigma, mu) = parameters([features, 0])`` for the anchors. Pass 2:
    ``parameters([features, spatial(y_hat_anchors)])`` for the non-anchors. ``parameters``
    maps ``features.shape[1] + spatial.out_channels`` channels to ``2C`` (scales, means); an
    exact integer 1x1 network runs on each pass's positions only (:func:`.integer.at_positions`).
    Returns the assembled ``y_hat`` and likelihoods (None when coding).
    """
    h, w = features.shape[-2:]
    anchor, non_anchor = checkerboard_masks(h, w, features.device)
    zeros = features.new_zeros(features.shape[0], spatial.conv.out_channels, h, w)
    scales, means = at_positions(parameters, torch.cat([features, zeros], dim=1), anchor).chunk(2, 1)
    y_anchor, lik_anchor = step(y, scales, means, anchor)
    scales, means = at_positions(parameters, torch.cat([features, spatial(y_anchor)], dim=1), non_anchor).chunk(2, 1)
    y_non_anchor, lik_non_anchor = step(y, scales, means, non_anchor)
    y_hat = torch.where(anchor, y_anchor, y_non_anchor)
    likelihoods = None if lik_anchor is None else torch.where(anchor, lik_anchor, lik_non_anchor)
    return y_hat, likelihoods


@ENTROPY_MODELS.register("checkerboard")
class CheckerboardEntropyModel(HyperpriorEntropyModel):
    """Mean-scale hyperprior + checkerboard context over all ``M`` channels at once.

    ``(sigma, mu) = EP([h_s(z_hat), ctx])`` with ``ctx = 0`` at anchors and
    ``ctx = Conv5x5(y_hat_anchors)`` (``2M`` channels) at non-anchors; ``EP`` is the 1x1
    entropy-parameter network, ``4M -> 10M/3 -> 8M/3 -> 2M`` as He et al. and compressai
    (``hidden``: other widths, a pair, or one int for both, as model files before format 3
    meant by it). Two network passes per image.
    """

    def __init__(self, N: int, M: int, hidden: int | tuple[int, int] | None = None, quantizer: str = "ste",
                 **rate_options):
        super().__init__(N, M, quantizer, **rate_options)
        hidden = (10 * M // 3, 8 * M // 3) if hidden is None else hidden  # entropy_parameters takes an int or a pair
        self.context = CheckerboardSpatialContext(M, 2 * M)
        self.entropy_parameters = entropy_parameters(4 * M, hidden, 2 * M)
        self.integer_networks(self.context, self.entropy_parameters)
        wide_inputs(self.context.conv)  # it reads the decoded latent: 15-bit inputs where the networks are 8-bit

    def code_latent(self, y, hyper, step):
        return code_checkerboard(y, hyper, step, self.entropy_parameters, self.context)
