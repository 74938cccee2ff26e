"""The latent entropy-model interface, its registry, and one quantise/code step.

A latent entropy model owns everything between the analysis and the synthesis transform:
side information (a hyperprior), the probability model of ``y`` and any context model. One
object serves training, encoding and decoding::

    forward(y, level)                         -> {"y_hat", "likelihoods": {name: tensor}, ...}  (training / eval)
    quantize(y, level)                        -> y_hat, exactly what the decoder will reconstruct (no coding)
    compress(y, coder, level)                 -> (streams, y_hat)
    decompress(streams, (h, w), coder, level) -> y_hat   (bit-exact copy of the encoder's y_hat)

Models with ``refinable = True`` also serve encoder-side latent refinement
(:mod:`codeclab.codecs.refinement`): ``side_latent(y)`` is the free side latent (``z``, or None)
and ``relaxed(y, side, level, rounding)`` the forward pass with every rounding replaced by
``rounding(values, offsets)``, differentiable in ``y`` and ``side``; ``compress(y, coder, level,
side)`` then codes the refined latents as they are.

``num_streams`` is how many byte strings :meth:`compress` writes; ``downsampling`` how much
smaller than ``y`` its coarsest side latent is (``y``'s height and width must be multiples).
``level`` selects the rate of a variable-rate model (``rate_levels > 0``, :mod:`.gain`): one
level per sample in ``forward``, one per image when coding; fixed-rate models take ``None``.

``quantizer`` says what reaches the synthesis (and any context model) in training:
``"noise"``, ``y + U(-1/2, 1/2)`` (Ballé et al.; compressai), or ``"ste"``, ``round(y - mu) + mu``
with a straight-through gradient (Minnen & Singh 2020's "mixed quantization"; the rate still
uses noise). In eval mode both give ``round(y - mu) + mu``.

Context models write their context logic once, in ``code_latent``, against a
:class:`LatentStep`: ``step(y, scales, means, mask) -> (y_hat, likelihoods)`` quantises
(:class:`QuantizeStep`), encodes (:class:`EncodeStep`) or decodes (:class:`DecodeStep`) one
group of elements. Encoder and decoder run the *same* ``code_latent`` on the same
already-quantised values, in the same order and with the same shapes, so the decoder
reproduces the encoder's ``y_hat`` bit for bit: on any machine when the model is
:attr:`~LatentEntropyModel.portable` (integer networks, :mod:`.integer`), otherwise under the
floating-point configuration that encoded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from ..registry import Registry
from .gaussian import GaussianConditional
from .latent_coding import decode_gaussian, encode_gaussian

ENTROPY_MODELS = Registry("entropy model")
QUANTIZERS = ("noise", "ste")


def quantize_ste(x: Tensor) -> Tensor:
    """``round(x)`` in the forward pass, identity gradient (straight-through estimator)."""
    return (torch.round(x) - x).detach() + x


class LatentEntropyModel(nn.Module):
    """Base of every latent entropy model (see the module docstring for the interface)."""

    registry_name: str = ""
    refinable: bool = False
    num_streams: int = 1
    downsampling: int = 1
    rate_levels: int = 0

    def __init__(self, quantizer: str = "noise"):
        super().__init__()
        if quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {quantizer!r}")
        self.quantizer = quantizer

    @staticmethod
    def round_ste(y: Tensor, means: Tensor | None) -> Tensor:
        """``round(y - means) + means`` (``round(y)`` without means) with a straight-through gradient."""
        return quantize_ste(y) if means is None else quantize_ste(y - means) + means

    @property
    def portable(self) -> bool:
        """Whether decoding is exact on every machine: no float network computes what the
        arithmetic decoder depends on (see :mod:`.integer`)."""
        return True

    def check_level(self, level) -> None:
        """Fixed-rate models refuse a level (variable-rate ones override this)."""
        if level is not None:
            raise ValueError(f"the {self.registry_name} entropy model has no rate levels")

    @abstractmethod
    def forward(self, y: Tensor, level=None) -> dict: ...

    @abstractmethod
    def quantize(self, y: Tensor, level=None) -> Tensor: ...

    @abstractmethod
    def compress(self, y: Tensor, coder, level=None) -> tuple[list[bytes], Tensor]: ...

    @abstractmethod
    def decompress(self, streams: list[bytes], shape: tuple[int, int], coder, level=None) -> Tensor: ...


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
    def _group(self, y, scales, means) -> tuple[Tensor, Tensor | None]: ...


class QuantizeStep(LatentStep):
    """Forward pass: likelihoods of ``y`` under N(means, scales) (noisy in training mode, rounded
    in eval mode) and ``y_hat`` as the entropy model's ``quantizer`` says."""

    def __init__(self, gaussian: GaussianConditional, quantizer: str):
        super().__init__(gaussian)
        self.quantizer = quantizer

    def _group(self, y, scales, means):
        y_hat, likelihoods = self.gaussian(y, scales, means=means)
        if self.quantizer == "ste":
            y_hat = LatentEntropyModel.round_ste(y, means)
        return y_hat, likelihoods


class RelaxedStep(LatentStep):
    """Refinement pass: ``y_tilde = rounding(y, means)`` (a differentiable stand-in for rounding
    around the means) and its likelihood."""

    def __init__(self, gaussian: GaussianConditional, rounding):
        super().__init__(gaussian)
        self.rounding = rounding

    def _group(self, y, scales, means):
        y_tilde = self.rounding(y, means)
        return y_tilde, self.gaussian.likelihood(y_tilde, scales, means)


class EncodeStep(LatentStep):
    """Compress: codes ``round(y - means)`` with the table of each scale into ``encoder``."""

    def __init__(self, gaussian: GaussianConditional, encoder):
        super().__init__(gaussian)
        self.encoder = encoder

    def _group(self, y, scales, means):
        return encode_gaussian(self.gaussian, y, scales, means, self.encoder), None


class DecodeStep(LatentStep):
    """Decompress: decodes the symbols that :class:`EncodeStep` wrote, in the same order."""

    def __init__(self, gaussian: GaussianConditional, decoder):
        super().__init__(gaussian)
        self.decoder = decoder

    def _group(self, y, scales, means):
        return decode_gaussian(self.gaussian, self.decoder, scales, means), None


def checkerboard_masks(h: int, w: int, device=None, anchor_parity: int = 0) -> tuple[Tensor, Tensor]:
    """Boolean ``[h, w]`` masks ``(anchor, non_anchor)``; anchors are where ``(i + j) % 2`` is
    ``anchor_parity`` (0: even, as He et al.'s figure; 1: odd, as S2LIC's code)."""
    rows = torch.arange(h, device=device)[:, None]
    cols = torch.arange(w, device=device)[None, :]
    anchor = (rows + cols) % 2 == anchor_parity
    return anchor, ~anchor


def default_hidden(M: int) -> int:
    """Default width of the per-slice networks: ``7M/10`` (224 at the papers' ``M = 320``)."""
    return max(16, 7 * M // 10)


def entropy_parameters(in_channels: int, hidden: int | tuple[int, int], out_channels: int,
                       last_bias: bool = True, negative_slope: float = 0.01) -> nn.Sequential:
    """The 1x1-convolution network mapping context features to ``(scales, means)``; ``hidden``:
    the widths of its two hidden layers (one int: both); ``negative_slope``: of its leaky ReLUs
    (0.01, PyTorch's and compressai's; 0.2 is TensorFlow's ``tf.nn.leaky_relu``)."""
    first, second = (hidden, hidden) if isinstance(hidden, int) else hidden
    return nn.Sequential(
        nn.Conv2d(in_channels, first, 1), nn.LeakyReLU(negative_slope, inplace=True),
        nn.Conv2d(first, second, 1), nn.LeakyReLU(negative_slope, inplace=True),
        nn.Conv2d(second, out_channels, 1, bias=last_bias),
    )
