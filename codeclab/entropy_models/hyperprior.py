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
"""

from __future__ import annotations

from ..transforms import cnn
from .base import ENTROPY_MODELS, DecodeStep, EncodeStep, LatentEntropyModel, LatentStep, QuantizeStep
from .factorized import EntropyBottleneck
from .gaussian import GaussianConditional
from .latent_coding import decode_factorized, encode_factorized, quantize_factorized


@ENTROPY_MODELS.register("hyperprior")
class HyperpriorEntropyModel(LatentEntropyModel):
    """Mean-scale hyperprior; subclasses add a context model by overriding :meth:`code_latent`.

    Args:
        N: channels of ``z``.  M: channels of ``y``.
        quantizer: ``"noise"`` or ``"ste"`` (see :mod:`.base`).
    """

    num_streams = 2
    downsampling = 4
    mean_scale = True

    def __init__(self, N: int, M: int, quantizer: str = "noise"):
        super().__init__(quantizer)
        self.N, self.M = int(N), int(M)
        self.h_a = cnn.hyper_analysis(N, M, mean_scale=self.mean_scale)
        self.h_s = cnn.hyper_synthesis(N, M, mean_scale=self.mean_scale)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()

    def hyper_input(self, y):
        return y

    def code_latent(self, y, hyper, step: LatentStep):
        """Run the (context) model over ``y`` given hyper features ``h_s(z_hat)``; every group
        of elements goes through ``step``. Returns ``(y_hat, likelihoods or None)``."""
        scales, means = hyper.chunk(2, 1)
        return step(y, scales, means)

    def forward(self, y):
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(self.hyper_input(y)))
        step = QuantizeStep(self.gaussian_conditional, self.quantizer)
        y_hat, y_likelihoods = self.code_latent(y, self.h_s(z_hat), step)
        return {"y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def quantize(self, y):
        # Coding into a throw-away sink is the one way to get exactly the decoder's y_hat
        # through a context model; the symbols are never written.
        z_hat = quantize_factorized(self.entropy_bottleneck, self.h_a(self.hyper_input(y)))
        y_hat, _ = self.code_latent(y, self.h_s(z_hat), EncodeStep(self.gaussian_conditional, _NullEncoder()))
        return y_hat

    def compress(self, y, coder):
        z_encoder, y_encoder = coder.encoder(), coder.encoder()
        z_hat = encode_factorized(self.entropy_bottleneck, self.h_a(self.hyper_input(y)), z_encoder)
        y_hat, _ = self.code_latent(y, self.h_s(z_hat), EncodeStep(self.gaussian_conditional, y_encoder))
        return [y_encoder.finish(), z_encoder.finish()], y_hat

    def decompress(self, streams, shape, coder):
        """``shape``: ``(h, w)`` of ``y``; the batch is one image (as the container stores)."""
        z_shape = (1, self.N, shape[0] // 4, shape[1] // 4)
        z_hat = decode_factorized(self.entropy_bottleneck, coder.decoder(streams[1]), z_shape)
        step = DecodeStep(self.gaussian_conditional, coder.decoder(streams[0]))
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
