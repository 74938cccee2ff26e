"""Autoregressive spatial context (Minnen, Ballé & Toderici, "Joint Autoregressive and Hierarchical
Priors for Learned Image Compression", NeurIPS 2018; compressai's
``JointAutoregressiveHierarchicalPriors``, registry name ``mbt2018``).

``(sigma, mu)`` of ``y`` at position ``(i, j)`` come from the hyperprior features there and a 5x5
masked ("type A") convolution over the already decoded ``y_hat`` (positions before ``(i, j)`` in
raster order)::

    ctx = MaskedConv5x5_A(y_hat)                                  [B, 2M, h, w]
    (sigma, mu) = EP([h_s(z_hat), ctx])      EP: 4M -> 10M/3 -> 8M/3 -> 2M, 1x1 convolutions

Training and evaluation passes (:meth:`code_latent` with a quantise step) run the context over
the whole latent at once, as compressai: on ``y_tilde = y + U(-1/2, 1/2)`` in training,
``round(y)`` in eval, and ``y_tilde`` is also what the synthesis sees (``quantizer="ste"``:
``round(y - mu) + mu`` with a straight-through gradient instead).
Coding is serial: position after position in raster order, the context computed from the 5x5
window of ``y_hat`` decoded so far, the ``M`` symbols of a position coded together (``h * w``
network passes when decoding; compressai does the same).

``rounding`` says what the single Gaussian codes. ``"mean"`` (default, compressai's ``compress``):
``round(y - mu)``, so ``y_hat = round(y - mu) + mu`` while the eval pass and the context's training
saw ``round(y)`` and ``y + U``. ``"integer"`` (Minnen et al.'s paper: ``y_hat = round(y)``):
``round(y)`` under the discretized ``N(mu, sigma)``, coded with per-element frequencies as the
mixture below (a one-component mixture), so the decoder sees what the eval pass sees. Training is
the same for both: one set of weights decodes either way. Measured on the leaderboard's CPU
budget (``reports/leaderboard``), where a 2,000-step context has not learnt to predict from
mean-offset values.

``components = K > 1`` replaces the Gaussian by Cheng et al.'s discretized Gaussian mixture
(:mod:`.mixture`; ``y_hat = round(y)``), the paper's entropy model of cheng2020;
``components = 1`` is the single Gaussian of compressai's models. The mixture model is Cheng et al.'s TensorFlow code's
(``ZhengxueCheng/Learned-Image-Compression-with-GMM-and-Attention``, ``entropy_parameter`` and
``train`` in ``src/*_joint_gmm*.py``)::

    EP: 4M -> 640 -> 640 -> 3 K M (last layer without bias), tf.nn.leaky_relu (slope 0.2)
    y = clip(y, -255, 256);   z = h_a(stop_gradient(y))    (the rate of z does not train g_a)
    robust tails: at y_hat = -255 the likelihood is the mass below -254.5 (edge_min), at 256
    the mass above 255.5 (edge_max), so the clipped values keep the whole tail

``leaky_slope`` (default 0.2, the official ``tf.nn.leaky_relu``) and ``robust_tails`` (default
on, the official ``edge_min``/``edge_max``) apply to the mixture; cheng2020 model files of format 5
keep CodecLab's first 0.01 (``nn.LeakyReLU()``) and no tails. CodecLab's first mixture (model
files before format 5) is :class:`codeclab.compat.entropy_models.AutoregressiveEntropyModelV1`.

``rate_levels = L > 0`` (QVRF's gain bank, :mod:`.gain`): level ``l`` codes ``g_l * y``. The
Gaussian goes through the gain step like every hyperprior model; the mixture codes
``round(g_l * y)`` under its components with means and scales times ``g_l`` (weights unchanged), so
its tails stay at the official edges of the coded value and ``y`` keeps the official clip. The
context sees ``y_hat = round(g_l y) / g_l`` (serial coding, eval) or ``y + U(-1/2, 1/2) / g_l``
(training): the quantisation of its level. One level (``g = 1``) is the paper's model.

Exact on the machine and configuration that encoded (the context network is float; the model is
not portable, see :mod:`.integer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transforms import cheng
from .base import ENTROPY_MODELS, EncodeStep, QuantizeStep, entropy_parameters, quantize_ste
from .gain import split_gain
from .hyperprior import HyperpriorEntropyModel
from .mixture import GaussianMixtureConditional


# Cheng et al.'s entropy-parameter widths (fixed, whatever N) and their clip of y ("robust version").
OFFICIAL_MIXTURE_HIDDEN = (640, 640)
OFFICIAL_LATENT_RANGE = (-255.0, 256.0)


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel sees only positions before the centre in raster order (type
    "A", centre excluded), compressai's ``MaskedConv2d`` (same ``mask`` buffer)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones_like(self.weight)
        centre = kernel_size // 2
        mask[:, :, centre, centre:] = 0
        mask[:, :, centre + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def at(self, y_hat: Tensor, i: int, j: int) -> Tensor:
        """The output at ``(i, j)`` only, ``[B, out, 1, 1]``, from the window of ``y_hat`` around it."""
        k = self.kernel_size[0]
        window = F.pad(y_hat, [k // 2] * 4)[..., i : i + k, j : j + k]
        return F.conv2d(window, self.weight * self.mask, self.bias)


@ENTROPY_MODELS.register("autoregressive")
class AutoregressiveEntropyModel(HyperpriorEntropyModel):
    """Mean-scale hyperprior + 5x5 masked autoregressive context (mbt2018); ``quantizer="noise"``
    as compressai. ``hyper="cheng2020"``: Cheng et al.'s 3x3 and sub-pixel hyper networks
    (:mod:`codeclab.transforms.cheng`, ``M = N``) instead of Minnen's. Float arithmetic only: the
    serial context is not an integer network here."""

    def __init__(self, N: int, M: int, quantizer: str = "noise", arithmetic: str = "float", hyper: str = "mbt2018",
                 components: int = 1, leaky_slope: float = 0.2, robust_tails: bool = True, rounding: str = "mean",
                 **rate_options):
        if arithmetic != "float":
            raise ValueError("the autoregressive context has no integer path (arithmetic must be 'float')")
        if rounding not in ("mean", "integer"):
            raise ValueError(f"rounding must be 'mean' or 'integer', got {rounding!r}")
        if hyper == "cheng2020":
            if M != N:
                raise ValueError(f"Cheng et al.'s hyper networks need M = N, got N={N}, M={M}")
            hyper_networks = {"h_a": cheng.hyper_analysis(N), "h_s": cheng.hyper_synthesis(N)}
        elif hyper == "mbt2018":
            hyper_networks = {}
        else:
            raise ValueError(f"hyper must be 'mbt2018' or 'cheng2020', got {hyper!r}")
        super().__init__(N, M, quantizer, **hyper_networks, **rate_options)
        self.context_prediction = MaskedConv2d(M, 2 * M, 5)
        self.components = int(components)
        self.mixture = GaussianMixtureConditional(self.components) if self.components > 1 else None
        self.rounding = rounding  # the mixture always codes round(y)
        # round(y) under one Gaussian is coded as a one-component mixture (no parameters).
        self.one_component = GaussianMixtureConditional(1)
        if self.mixture is not None:
            self.leaky_slope = float(leaky_slope)
            if robust_tails:
                self.mixture.edges = OFFICIAL_LATENT_RANGE
            self.entropy_parameters = entropy_parameters(4 * M, OFFICIAL_MIXTURE_HIDDEN, 3 * self.components * M,
                                                         last_bias=False, negative_slope=self.leaky_slope)
        else:
            self.entropy_parameters = entropy_parameters(4 * M, (10 * M // 3, 8 * M // 3), 2 * M)

    def hyper_input(self, y):
        return y if self.mixture is None else y.detach()

    def clipped(self, y: Tensor) -> Tensor:
        """``y`` as the mixture codes it: clipped to the official range (the Gaussian: as it is)."""
        return y if self.mixture is None else y.clamp(*OFFICIAL_LATENT_RANGE)

    refinable = False  # a serial context: one refinement iteration would decode position by position

    @property
    def portable(self) -> bool:
        return False

    def code_latent(self, y, hyper, step):
        if y is not None:
            y = self.clipped(y)
        gain, inner = split_gain(step)
        if isinstance(inner, QuantizeStep):
            # Parallel pass over the whole latent, as compressai's forward.
            coded = y * gain
            coded_tilde = self._quantized(coded)
            y_tilde = coded_tilde / gain
            params = self.entropy_parameters(torch.cat([hyper, self.context_prediction(y_tilde)], 1))
            if self.mixture is None and (self.rounding == "mean" or self.training):
                y_hat, likelihoods = step(y, *params.chunk(2, 1))
            elif self.mixture is None:  # round(y) under N(mu, sigma), as the decoder codes it
                scales, means = params.chunk(2, 1)
                y_hat = y_tilde
                likelihoods = self.gaussian_conditional.likelihood(coded_tilde, scales * gain, means * gain)
            else:
                y_hat = quantize_ste(coded) / gain
                likelihoods = self.mixture.likelihood(coded_tilde, self._scaled(params, gain))
            return (y_hat if self.quantizer == "ste" else y_tilde), likelihoods
        batch, _, h, w = hyper.shape
        y_hat = hyper.new_zeros(batch, self.M, h, w)
        for i in range(h):
            for j in range(w):
                features = torch.cat([hyper[..., i : i + 1, j : j + 1], self.context_prediction.at(y_hat, i, j)], 1)
                y_ij = None if y is None else y[..., i : i + 1, j : j + 1]
                y_hat[..., i : i + 1, j : j + 1] = self._code_position(y_ij, self.entropy_parameters(features), step)
        return y_hat, None

    def _quantized(self, coded: Tensor) -> Tensor:
        """The parallel pass's stand-in for the coded value: ``+ U(-1/2, 1/2)`` in training, rounded in eval."""
        return coded + torch.empty_like(coded).uniform_(-0.5, 0.5) if self.training else torch.round(coded)

    def _scaled(self, params: Tensor, gain) -> Tensor:
        """Mixture parameters of the coded value ``g * y``: means and scales times ``g``."""
        if not torch.is_tensor(gain):
            return params  # fixed rate: g = 1
        logits, means, scales = params.reshape(params.shape[0], self.components, 3, -1, *params.shape[2:]).unbind(2)
        gain = gain.reshape(-1, 1, 1, 1, 1)  # a 0-d gain or one per sample ([B, 1, 1, 1])
        return torch.stack([logits, means * gain, scales * gain], 2).reshape(params.shape)

    def _code_position(self, y, params, step) -> Tensor:
        """Encode or decode the ``M`` values of one position under ``params``; returns them."""
        if self.mixture is None and self.rounding == "mean":
            return step(y, *params.chunk(2, 1))[0]
        gain, inner = split_gain(step)
        if self.mixture is None:  # the Gaussian as a one-component mixture: weight logit 0, mean, scale
            coder, (scales, means) = self.one_component, params.chunk(2, 1)
            # bounded after the gain, as the Gaussian conditional bounds what a gain step gives it
            bound = float(self.gaussian_conditional.scale_bound)
            params = torch.cat([torch.zeros_like(means), means * gain, (scales * gain).clamp_min(bound)], 1)
        else:
            coder, params = self.mixture, self._scaled(params, gain)
        if isinstance(inner, EncodeStep):
            return coder.encode(y * gain, params, inner.encoder) / gain
        return coder.decode(params, inner.decoder, (params.shape[0], self.M, 1, 1)) / gain
