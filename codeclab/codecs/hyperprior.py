"""The Ballé/Minnen hyperprior family: bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean.

Parameter names match compressai's models of the same names (``g_a``, ``g_s``, ``h_a``, ``h_s``,
``entropy_bottleneck``, ``gaussian_conditional``), so their state_dicts load directly.
Published configurations: ``N, M = 128, 192`` for the low rates, ``192, 320`` for the high rates.

Rate model:
  * factorized: ``p(y_hat) = prod_c p_c(y_hat_c)``, a non-parametric density per channel
    (Ballé et al. 2017), convolved with U(-1/2, 1/2).
  * scale hyperprior: ``y_hat ~ N(0, sigma^2) * U(-1/2, 1/2)`` with ``sigma = h_s(z_hat)`` and a
    factorized prior on ``z`` (Ballé et al. 2018).
  * mean-scale: ``y_hat ~ N(mu, sigma^2) * U(-1/2, 1/2)``, ``(sigma, mu) = h_s(z_hat)``
    (Minnen et al. 2018, without the autoregressive context).

Training uses additive uniform noise; coding rounds ``y - mu`` to integers (exact) and codes the
symbols with a Gaussian table chosen by :func:`~codeclab.entropy_models.latent_coding.scale_to_table_index`.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from ..entropy_models.latent_coding import decode_factorized, decode_gaussian, encode_factorized, encode_gaussian
from ..transforms import cnn
from .base import Codec
from .registry import register_codec


@register_codec
class FactorizedPrior(Codec):
    """bmshj2018-factorized. Latent ``y``: ``[B, M, H/16, W/16]``; one stream."""

    codec_id = "bmshj2018-factorized"
    downsampling = 16
    num_streams = 1

    def __init__(self, N: int = 128, M: int = 192):
        super().__init__()
        self.config = {"N": int(N), "M": int(M)}
        self.g_a = cnn.analysis(N, M)
        self.g_s = cnn.synthesis(N, M)
        self.entropy_bottleneck = EntropyBottleneck(M)

    def forward(self, x):
        y_hat, y_likelihoods = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_likelihoods}}

    def _compress(self, x):
        encoder = self.coder.encoder()
        encode_factorized(self.entropy_bottleneck, self.g_a(x), encoder)
        return [encoder.finish()]

    def _decompress(self, strings, size):
        shape = (1, self.config["M"], size[0] // 16, size[1] // 16)
        y_hat = decode_factorized(self.entropy_bottleneck, self.coder.decoder(strings[0]), shape)
        return self.g_s(y_hat)


@register_codec
class ScaleHyperprior(Codec):
    """bmshj2018-hyperprior. ``y``: ``[B, M, H/16, W/16]``, ``z``: ``[B, N, H/64, W/64]``.

    Two streams, ``[y, z]``; ``z`` is decoded first and gives the scales of ``y``.
    """

    codec_id = "bmshj2018-hyperprior"
    downsampling = 64
    num_streams = 2
    mean_scale = False

    def __init__(self, N: int = 128, M: int = 192):
        super().__init__()
        self.config = {"N": int(N), "M": int(M)}
        self.g_a = cnn.analysis(N, M)
        self.g_s = cnn.synthesis(N, M)
        self.h_a = cnn.hyper_analysis(N, M, self.mean_scale)
        self.h_s = cnn.hyper_synthesis(N, M, self.mean_scale)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

    def _hyper_input(self, y):
        return y if self.mean_scale else torch.abs(y)

    def _gaussian_params(self, z_hat):
        """``(scales, means)`` of ``y`` predicted from ``z_hat``; means are None without a mean."""
        params = self.h_s(z_hat)
        if not self.mean_scale:
            return params, None
        scales, means = params.chunk(2, 1)
        return scales, means

    def forward(self, x):
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(self._hyper_input(y)))
        scales, means = self._gaussian_params(z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def _compress(self, x):
        y = self.g_a(x)
        z_encoder = self.coder.encoder()
        z_hat = encode_factorized(self.entropy_bottleneck, self.h_a(self._hyper_input(y)), z_encoder)
        scales, means = self._gaussian_params(z_hat)
        y_encoder = self.coder.encoder()
        encode_gaussian(self.gaussian_conditional, y, scales, means, y_encoder)
        return [y_encoder.finish(), z_encoder.finish()]

    def _decompress(self, strings, size):
        z_shape = (1, self.config["N"], size[0] // 64, size[1] // 64)
        z_hat = decode_factorized(self.entropy_bottleneck, self.coder.decoder(strings[1]), z_shape)
        scales, means = self._gaussian_params(z_hat)
        y_hat = decode_gaussian(self.gaussian_conditional, self.coder.decoder(strings[0]), scales, means)
        return self.g_s(y_hat)


@register_codec
class MeanScaleHyperprior(ScaleHyperprior):
    """mbt2018-mean: the scale hyperprior with predicted means (no autoregressive context)."""

    codec_id = "mbt2018-mean"
    mean_scale = True
