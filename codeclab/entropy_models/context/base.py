"""The latent entropy-model interface, the mean-scale hyperprior base, and one quantise/code step.

A latent entropy model owns everything between the analysis and synthesis transforms: the
hyper transforms ``h_a``/``h_s``, the factorized prior of ``z``, the Gaussian conditional of
``y`` and any context model. Shapes: ``y`` is ``[B, M, h, w]`` (``h, w`` multiples of 4),
``z`` is ``[B, N, h/4, w/4]``, the hyper features ``h_s(z_hat)`` are ``[B, 2M, h, w]``.

Each model writes its context logic once, in :meth:`LatentEntropyModel.code_latent`, against a
:class:`LatentStep`: a callable ``step(y, scales, means, mask) -> (y_hat, likelihoods)`` that
quantises (training/eval forward), encodes (compress) or decodes (decompress) one group of
latent elements. Because the encoder and the decoder run the *same* ``code_latent`` code on
the same already-quantised values, in the same order and with the same tensor shapes, the
decoder reproduces the encoder's ``y_hat`` bit for bit (on the same machine and build; see
:mod:`codeclab.entropy_models.latent_coding` for what floating point does across machines).

Training quantisation (mixed, as in Minnen & Singh 2020): the rate uses additive uniform
noise (compressai's ``GaussianConditional`` in training mode), while the values passed on to
the context model and the synthesis transform are rounded with a straight-through gradient,
``round(y - mu) + mu``, which is exactly what the decoder reconstructs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.ops import quantize_ste
from torch import nn

from ...transforms import cnn
from ..coders import EntropyCoder, StreamDecoder, StreamEncoder
from ..latent_coding import decode_factorized, decode_gaussian, encode_factorized, encode_gaussian


def checkerboard_masks(h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``[h, w]`` masks ``(anchor, non_anchor)``; anchors are where ``(i + j)`` is even."""
    rows = torch.arange(h, device=device)[:, None]
    cols = torch.arange(w, device=device)[None, :]
    anchor = (rows + cols) % 2 == 0
    return anchor, ~anchor


class LatentStep(ABC):
    """Quantise, encode or decode the elements of ``y`` selected by a spatial ``mask``.

    ``__call__(y, scales, means, mask)``: ``y``, ``scales``, ``means`` are ``[B, C, h, w]``
    (``y`` is None when decoding), ``mask`` a boolean ``[h, w]`` or None (all positions).
    Returns ``y_hat`` ``[B, C, h, w]`` (zero outside the mask) and the likelihoods (one outside
    the mask; None when coding). Subclasses implement :meth:`_group` on the selected elements.
    """

    def __init__(self, gaussian: GaussianConditional):
        self.gaussian = gaussian

    def __call__(self, y, scales, means, mask=None):
        if mask is None:
            return self._group(y, scales, means)
        def pick(t):  # [B, C, h, w] -> [B, C, K], positions in row-major order on both sides
            return None if t is None else t[..., mask]

        values, likelihoods = self._group(pick(y), pick(scales), pick(means))
        y_hat = torch.zeros_like(means)
        y_hat[..., mask] = values
        if likelihoods is not None:
            full = torch.ones_like(means)
            full[..., mask] = likelihoods
            likelihoods = full
        return y_hat, likelihoods

    @abstractmethod
    def _group(self, y, scales, means) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class QuantizeStep(LatentStep):
    """Forward pass: likelihoods of ``y`` under N(means, scales) (noisy in training mode, rounded
    in eval mode) and ``y_hat = round(y - means) + means`` with a straight-through gradient."""

    def _group(self, y, scales, means):
        _, likelihoods = self.gaussian(y, scales, means=means)
        return quantize_ste(y - means) + means, likelihoods


class EncodeStep(LatentStep):
    """Compress: codes ``round(y - means)`` with the table of each scale into ``encoder``."""

    def __init__(self, gaussian: GaussianConditional, encoder: StreamEncoder):
        super().__init__(gaussian)
        self.encoder = encoder

    def _group(self, y, scales, means):
        return encode_gaussian(self.gaussian, y, scales, means, self.encoder), None


class DecodeStep(LatentStep):
    """Decompress: decodes the symbols that :class:`EncodeStep` wrote, in the same order."""

    def __init__(self, gaussian: GaussianConditional, decoder: StreamDecoder):
        super().__init__(gaussian)
        self.decoder = decoder

    def _group(self, y, scales, means):
        return decode_gaussian(self.gaussian, self.decoder, scales, means), None


def default_hidden(M: int) -> int:
    """Default width of the per-slice networks: ``7M/10`` (224 at the papers' ``M = 320``)."""
    return max(16, 7 * M // 10)


def entropy_parameters(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """The 1x1-convolution network mapping context features to ``(scales, means)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, out_channels, 1),
    )


class LatentEntropyModel(nn.Module):
    """Base: the mean-scale hyperprior side information plus a context model over ``y``.

    ``forward(y) -> (y_hat, {"y": likelihoods, "z": likelihoods})``;
    ``compress(y, coder) -> ([y_stream, z_stream], y_hat)``;
    ``decompress(streams, (h, w), coder) -> y_hat`` (bit-exact copy of the encoder's ``y_hat``).
    ``z`` is coded with the factorized prior into its own stream; all groups of ``y`` go, in
    decoding order, into one stream. Subclasses implement :meth:`code_latent`.
    """

    name: str = ""

    def __init__(self, N: int, M: int):
        super().__init__()
        self.N, self.M = N, M
        self.h_a = cnn.hyper_analysis(N, M, mean_scale=True)
        self.h_s = cnn.hyper_synthesis(N, M, mean_scale=True)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

    @abstractmethod
    def code_latent(self, y: torch.Tensor | None, hyper: torch.Tensor, step: LatentStep):
        """Run the context model over ``y`` given hyper features ``[B, 2M, h, w]``; every group of
        elements goes through ``step``. Returns ``(y_hat, likelihoods or None)``."""

    def forward(self, y: torch.Tensor):
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        y_hat, y_likelihoods = self.code_latent(y, self.h_s(z_hat), QuantizeStep(self.gaussian_conditional))
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def compress(self, y: torch.Tensor, coder: EntropyCoder) -> tuple[list[bytes], torch.Tensor]:
        z_encoder, y_encoder = coder.encoder(), coder.encoder()
        z_hat = encode_factorized(self.entropy_bottleneck, self.h_a(y), z_encoder)
        y_hat, _ = self.code_latent(y, self.h_s(z_hat), EncodeStep(self.gaussian_conditional, y_encoder))
        return [y_encoder.finish(), z_encoder.finish()], y_hat

    def decompress(self, streams: list[bytes], size: tuple[int, int], coder: EntropyCoder) -> torch.Tensor:
        """``size``: ``(h, w)`` of ``y``; the batch is one image (as the container stores)."""
        z_shape = (1, self.N, size[0] // 4, size[1] // 4)
        z_hat = decode_factorized(self.entropy_bottleneck, coder.decoder(streams[1]), z_shape)
        y_hat, _ = self.code_latent(None, self.h_s(z_hat), DecodeStep(self.gaussian_conditional, coder.decoder(streams[0])))
        return y_hat


class HyperpriorEntropyModel(LatentEntropyModel):
    """Mean-scale hyperprior without context (Minnen et al. 2018, the foundation's mbt2018-mean
    prior): ``y ~ N(mu, sigma^2) * U(-1/2, 1/2)``, ``(sigma, mu) = h_s(z_hat)``; one group."""

    name = "hyperprior"

    def code_latent(self, y, hyper, step):
        scales, means = hyper.chunk(2, 1)
        return step(y, scales, means)
