"""Hyperpriors: side information ``z`` that predicts the Gaussian parameters of ``y``.

* ``"scale_hyperprior"``, :class:`ScaleHyperprior` (Ballé et al., "Variational image
  compression with a scale hyperprior", ICLR 2018; bmshj2018-hyperprior):
  ``z = h_a(|y|)``, ``sigma = h_s(z_hat)``, ``y ~ N(0, sigma^2) * U(-1/2, 1/2)``.
* ``"hyperprior"``, :class:`HyperpriorEntropyModel` (Minnen et al., "Joint Autoregressive and
  Hierarchical Priors for Learned Image Compression", NeurIPS 2018, without the
  autoregressive context; mbt2018-mean): ``z = h_a(y)``, ``(sigma, mu) = h_s(z_hat)``.
  It is also the base of the context models (checkerboard, ChARM, ACGC), which replace
  :meth:`HyperpriorEntropyModel.code_latent`.

Coding order (two streams, written ``[y, z]``; ``z`` is decoded first)::

    y ──► h_a ──► z ──► round(z - median) ──► stream 1 (factorized prior)
                        z_hat ──► h_s ──► (sigma, mu) ──► round(y - mu) ──► stream 0

Shapes: ``y`` ``[B, M, h, w]`` (``h, w`` multiples of 4), ``z`` ``[B, N, h/4, w/4]``.

With ``rate_levels = L > 0`` any of them is a variable-rate model: a :class:`~.gain.GainBank`
scales what the Gaussian conditional codes (``y``, its scales and means) by the level's gain,
through every step of the context loop (:class:`~.gain.GainStep`); ``z`` is the same at every level.

``arithmetic`` says how the networks that feed the decoder (``h_s`` and any context model) run:
``"float"`` (the papers; a file then decodes only under the floating-point configuration that
wrote it), ``"integer"`` (:mod:`.integer`: exact on every machine, quantisation-aware in
training) or ``"int8"`` (exact too, with 8-bit weights and inputs: several times faster on CPU,
but coarser, so its inputs are calibrated and the networks fine-tuned quantisation-aware). All
have the same parameters, so a float model converts by loading its weights.
"""

from __future__ import annotations

from torch import nn

from ..transforms import cnn
from .base import ENTROPY_MODELS, DecodeStep, EncodeStep, LatentEntropyModel, LatentStep, QuantizeStep, RelaxedStep
from .factorized import EntropyBottleneck
from .gain import GainBank, GainStep
from .gaussian import SCALES_LEVELS, GaussianConditional
from .integer import INTEGER_ARITHMETICS, MAX_WEIGHT_BITS, make_integer
from .latent_coding import decode_factorized, encode_factorized, quantize_factorized


ARITHMETICS = ("float", "integer", "int8")


@ENTROPY_MODELS.register("hyperprior")
class HyperpriorEntropyModel(LatentEntropyModel):
    """Mean-scale hyperprior; subclasses add a context model by overriding :meth:`code_latent`.

    Args:
        N: channels of ``z``.  M: channels of ``y``.
        quantizer: ``"noise"`` or ``"ste"`` (see :mod:`.base`).
        rate_levels: ``L`` levels of a variable-rate model (0: fixed rate); ``lmbda_min``,
            ``lmbda_max``: the range of their lambdas.
        scale_table_levels: tables of the Gaussian conditional (its log grid holds the gains).
        arithmetic: ``"float"``, ``"integer"`` or ``"int8"`` entropy-parameter networks (see the module docstring).
        h_a, h_s: hyper networks other than Ballé's/Minnen's (:func:`~codeclab.transforms.cnn.hyper_analysis`,
            :func:`~codeclab.transforms.cnn.hyper_synthesis`), for context models whose papers use others.
    """

    num_streams = 2
    downsampling = 4
    mean_scale = True

    def __init__(self, N: int, M: int, quantizer: str = "noise", rate_levels: int = 0, lmbda_min: float = 0.0018,
                 lmbda_max: float = 0.0483, scale_table_levels: int = SCALES_LEVELS, arithmetic: str = "float",
                 h_a: nn.Module | None = None, h_s: nn.Module | None = None, lmbdas: list[float] | None = None):
        super().__init__(quantizer)
        if arithmetic not in ARITHMETICS:
            raise ValueError(f"arithmetic must be one of {', '.join(ARITHMETICS)}, got {arithmetic!r}")
        self.arithmetic = arithmetic
        self.N, self.M = int(N), int(M)
        self.h_a = h_a if h_a is not None else cnn.hyper_analysis(N, M, mean_scale=self.mean_scale)
        self.h_s = h_s if h_s is not None else cnn.hyper_synthesis(N, M, mean_scale=self.mean_scale)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(scale_levels=scale_table_levels)
        self.rate_levels = int(rate_levels)
        if self.rate_levels:
            self.gain_bank = GainBank(rate_levels, lmbda_min, lmbda_max, self.gaussian_conditional.grid_ratio, lmbdas)
        self.integer_networks(self.h_s)

    @property
    def portable(self) -> bool:
        return self.arithmetic in INTEGER_ARITHMETICS

    def integer_networks(self, *networks: nn.Module) -> None:
        """Make ``networks`` (those whose outputs the decoder depends on) integer when
        ``arithmetic`` is ``"integer"`` or ``"int8"``; subclasses call it on their context networks."""
        if self.portable:
            for network in networks:
                make_integer(network, bits=8 if self.arithmetic == "int8" else MAX_WEIGHT_BITS)

    def check_level(self, level) -> None:
        if not self.rate_levels:
            super().check_level(level)
        elif level is None:
            raise ValueError(f"a variable-rate model needs a rate level in [0, {self.rate_levels})")

    def _step(self, step, level):
        """``step`` as is (fixed rate) or scaled by the level's gain (when coding, the gain every
        machine computes identically)."""
        self.check_level(level)
        if level is None:
            return step
        coding = not isinstance(step, QuantizeStep)
        return GainStep(step, self.gain_bank.coding_gain(level) if coding else self.gain_bank.gain(level))

    def hyper_input(self, y):
        return y

    def code_latent(self, y, hyper, step: LatentStep):
        """Run the (context) model over ``y`` given hyper features ``h_s(z_hat)``; every group
        of elements goes through ``step``. Returns ``(y_hat, likelihoods or None)``."""
        scales, means = hyper.chunk(2, 1)
        return step(y, scales, means)

    # What h_s sees in training: z + noise (Ballé, Minnen; compressai) or, "ste", z rounded around
    # the medians with a straight-through gradient (ms2020, S2LIC); the rate of z uses noise either way.
    hyper_quantizer = "noise"

    def forward(self, y, level=None):
        z = self.side_latent(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        if self.training and self.hyper_quantizer == "ste":
            z_hat = z + (quantize_factorized(self.entropy_bottleneck, z) - z).detach()
        step = self._step(QuantizeStep(self.gaussian_conditional, self.quantizer), level)
        y_hat, y_likelihoods = self.code_latent(y, self.h_s(z_hat), step)
        return {"y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def quantize(self, y, level=None):
        # Coding into a throw-away sink is the one way to get exactly the decoder's y_hat
        # through a context model; the symbols are never written.
        z_hat = quantize_factorized(self.entropy_bottleneck, self.side_latent(y))
        step = self._step(EncodeStep(self.gaussian_conditional, _NullEncoder()), level)
        y_hat, _ = self.code_latent(y, self.h_s(z_hat), step)
        return y_hat

    refinable = True

    def side_latent(self, y):
        return self.h_a(self.hyper_input(y))

    def relaxed(self, y, z, level, rounding):
        z_tilde = rounding(z, self.entropy_bottleneck.broadcast_medians(z.ndim))
        z_likelihoods = self.entropy_bottleneck.channel_likelihood(z_tilde)
        step = self._step(RelaxedStep(self.gaussian_conditional, rounding), level)
        y_tilde, y_likelihoods = self.code_latent(y, self.h_s(z_tilde), step)
        return {"y_hat": y_tilde, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, y, coder, level=None, side=None):
        """``side``: a refined ``z`` to code instead of ``h_a(y)``."""
        z_encoder, y_encoder = coder.encoder(), coder.encoder()
        z = self.side_latent(y) if side is None else side
        z_hat = encode_factorized(self.entropy_bottleneck, z, z_encoder)
        step = self._step(EncodeStep(self.gaussian_conditional, y_encoder), level)
        y_hat, _ = self.code_latent(y, self.h_s(z_hat), step)
        return [y_encoder.finish(), z_encoder.finish()], y_hat

    def decompress(self, streams, shape, coder, level=None):
        """``shape``: ``(h, w)`` of ``y``; the batch is one image (as the container stores)."""
        z_shape = (1, self.N, shape[0] // 4, shape[1] // 4)
        z_hat = decode_factorized(self.entropy_bottleneck, coder.decoder(streams[1]), z_shape)
        step = self._step(DecodeStep(self.gaussian_conditional, coder.decoder(streams[0])), level)
        y_hat, _ = self.code_latent(None, self.h_s(z_hat), step)
        return y_hat


@ENTROPY_MODELS.register("scale_hyperprior")
class ScaleHyperprior(HyperpriorEntropyModel):
    """Scale-only hyperprior of bmshj2018-hyperprior: ``h_a`` sees ``|y|``, means are zero."""

    mean_scale = False

    def hyper_input(self, y):
        return y.abs()

    def code_latent(self, y, hyper, step):
        return step(y, hyper, None)


class _NullEncoder:
    """A stream encoder that discards what it is given (see :meth:`HyperpriorEntropyModel.quantize`)."""

    def encode(self, symbols, indexes, tables) -> None:
        pass

    def encode_categorical(self, symbols, freqs) -> None:
        pass
