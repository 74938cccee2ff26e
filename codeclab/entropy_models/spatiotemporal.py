"""The spatiotemporal entropy model of STEM (Sun et al., "Spatiotemporal Entropy Model is All You
Need for Learned Video Compression", arXiv 2104.06083; official TensorFlow code tinyvision/IPCodec,
``networks/IP_network.py`` and ``networks/modules/hyperED/``).

Every frame goes through the same image analysis transform; a P-frame codes its latent ``y_t``
given the previous decoded latent ``y_hat_{t-1}`` (the reference). There is no motion estimation
and no pixel residual, so the reconstruction ``g_s(y_hat_t)`` cannot drift::

    [y_t, y_hat_{t-1}] ──► h_a ──► z ──► round ──► stream 1 (factorized prior)
                                         z_hat ──► h_s ──────────────┐ hyper    [2M]
    y_hat_{t-1} ──► temporal prior (3 x conv5x5) ────────────────────┤ temporal [2M]
    r_hat (decoded so far) ──► spatial prior (masked 5x5) ───────────┤ spatial  [2M]
                                                                     ▼
                               EP (1x1: 6M -> 5M -> 4M -> 2M) ──► (sigma, mu)
    r = y_t - y_hat_{t-1} ──► round(r - mu) ──► stream 0;   y_hat_t = r_hat + y_hat_{t-1}

As the official code: the hyper-encoder sees ``concat[y_t, y_hat_{t-1}]`` (conv3, conv5/2,
conv5/2 to ``N``); the hyper-decoder is deconv5/2 to ``N``, deconv5/2 to ``1.5 N``, conv3 to
``2M``; the temporal prior is ``M -> 4M/3 -> 5M/3 -> 2M`` (5x5); the entropy parameters are
1x1 convolutions ``in -> 5 in/6 -> 2 in/3 -> 2M``; every activation is TensorFlow's leaky ReLU
(slope 0.2); the spatial prior is a 5x5 convolution over the decoded residual whose window is
the 4 rows above and the 2 positions to the left (the official mask: padding 4 rows on top and 2
columns each side, bottom row from the centre on masked), coded position by position.

``spatial``: ``"masked"`` (the paper), ``"checkerboard"`` (two-pass parallel decoding: anchors
from the hyper and temporal priors alone, non-anchors add a 5x5 convolution over the decoded
anchors, as :mod:`.checkerboard`), or ``"none"`` (the paper's ablation without a spatial prior).

Training, as the official code (tinyvision/IPCodec ``networks/IP_network.py``): the rate of the
residual is the likelihood of the rounded residual (``residual_rate="rounded"``:
``round(r - mu) + mu``, straight-through) and the spatial prior sees the rounded residual
(``context_input="rounded"``). ``"noise"`` for either is CodecLab's first choice, additive
uniform noise (``r + U(-1/2, 1/2)``); STEM model files before format 6 (``models/stem.safetensors``)
keep it. Neither changes what is coded.

The quantisation grid (``residual_grid``): the official code rounds ``y`` itself, so every frame's
latent stays on one integer grid whatever the predicted mean. Here the frozen mbt2018-mean's
I-frames are on the grid ``mu_I + Z / g`` (mean-offset rounding), and a P-frame keeps its
reference's grid (``"reference"``, the default; :class:`~.gaussian.GridGaussianConditional`): the
residual is coded as ``round(g r) - round(g mu)``, so ``r_hat = round(g r) / g`` and the mean moves
only the probabilities, as in the official code. The table is that of ``N(g mu, g sigma)`` with the
fractional part of ``g mu`` resolved to ``1/16`` where ``g sigma < 2`` (``mean_offsets=16``), the
zero-mean table of ``g sigma`` elsewhere; ``mean_offsets=0`` (model files before the option)
rounds the mean to the grid everywhere, which cost the P-frames up to 7% at low rates (measured on
the stage-4 file, basketballpass, level 8, before any retraining). ``"mean"`` rounds around the
predicted mean instead (``round(g (r - mu)) / g + mu``, the image codec's rule; model files
written before the option existed): the rate-only training then also moves the reconstruction,
and over a long chain of P-frames (intra period -1) their quality and rate drift.

Deviations (named in the README): the official code models the integer residual with a Laplace
``(mu, exp(s))`` with a continuous mean; here it is the project's Gaussian conditional, whose
mean is resolved to ``1/16`` below scale 2 and rounded to the grid above (``mean_offsets``). The
official ``z`` prior is a per-channel ``Laplace(mu, exp(sigma))`` with learned ``mu, sigma``; here
it is Ballé's factorized density (the project's ``EntropyBottleneck``), whose integer tables the
coder already serves exactly on every machine; a per-channel Laplace would need its own table
builder, and the shipped ``models/stem.safetensors`` was trained with the factorized prior. Input
channels of the entropy parameters are ordered ``[hyper, temporal, spatial]`` (``[spatial,
temporal, hyper]`` in the official code), which only permutes a 1x1 layer's weights. With
``rate_levels`` (the frozen image codec is variable-rate), the level's gain scales what is coded
exactly as for the image codec's I-frames (:mod:`.gain`).

``arithmetic="integer"`` makes every network the decoder depends on (hyper-synthesis, temporal
prior, spatial prior, entropy parameters) an integer network (:mod:`.integer`); the reference
``y_hat_{t-1}`` is an IEEE-exact function of decoded symbols, so P-frames decode identically on
every machine too. ``arithmetic="int8"`` (STEM's ``temporal_arithmetic``) makes them exact 8-bit
networks instead (int8 products, int32 sums: several times faster on a CPU); the two layers that
read quantised latents, the temporal prior's first and the spatial prior, take 15-bit inputs (two
int8 digits), since 8 bits would blur the reference's grid at high rates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transforms.layers import conv, deconv
from .base import ENTROPY_MODELS, DecodeStep, EncodeStep, LatentEntropyModel, QuantizeStep
from .gain import split_gain
from .gaussian import GridGaussianConditional
from .checkerboard import CheckerboardSpatialContext, code_checkerboard
from .hyperprior import HyperpriorEntropyModel, _NullEncoder
from .integer import wide_inputs
from .latent_coding import decode_factorized, encode_factorized, quantize_factorized

# TensorFlow's tf.nn.leaky_relu default, used by every STEM layer.
LEAKY_SLOPE = 0.2
SPATIAL_PRIORS = ("masked", "checkerboard", "none")
TRAINING_INPUTS = ("rounded", "noise")
RESIDUAL_GRIDS = ("reference", "mean")


class RoundedRateStep(QuantizeStep):
    """Training pass of the official STEM: ``r_hat`` rounded as coding rounds it (straight-through)
    and the likelihood of that rounded value (no noise)."""

    def _group(self, y, scales, means):
        y_hat = LatentEntropyModel.round_ste(y, self.gaussian.coding_means(means))
        return y_hat, self.gaussian.likelihood(y_hat, scales, means)


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


def stem_hyper_analysis(N: int, M: int) -> nn.Sequential:
    """``[y_t, y_hat_{t-1}]`` ``[B, 2M, h, w] -> z [B, N, h/4, w/4]`` (hyperE.py)."""
    return nn.Sequential(conv(2 * M, N, 3, 1), _leaky(), conv(N, N), _leaky(), conv(N, N))


def stem_hyper_synthesis(N: int, M: int) -> nn.Sequential:
    """``z_hat [B, N, h/4, w/4] -> [B, 2M, h, w]`` (hyperD.py, ``up_type="deconv"``)."""
    wide = round(1.5 * N)
    return nn.Sequential(deconv(N, N), _leaky(), deconv(N, wide), _leaky(), conv(wide, 2 * M, 3, 1))


def temporal_prior(M: int) -> nn.Sequential:
    """``y_hat_{t-1} [B, M, h, w] -> [B, 2M, h, w]``: three 5x5 convolutions (hyperT.py)."""
    return nn.Sequential(
        conv(M, M * 4 // 3, 5, 1), _leaky(), conv(M * 4 // 3, M * 5 // 3, 5, 1), _leaky(), conv(M * 5 // 3, 2 * M, 5, 1),
    )


def stem_entropy_parameters(in_channels: int, M: int) -> nn.Sequential:
    """1x1 convolutions ``in -> 5 in/6 -> 2 in/3 -> 2M`` (entropy_para.py with ``out_filter = 2M``)."""
    first, second = in_channels * 5 // 6, in_channels * 2 // 3
    return nn.Sequential(
        nn.Conv2d(in_channels, first, 1), _leaky(), nn.Conv2d(first, second, 1), _leaky(), nn.Conv2d(second, 2 * M, 1),
    )


class CausalContext(nn.Module):
    """STEM's masked 5x5 spatial prior (context.py): at ``(i, j)`` it sees rows ``i-4 .. i-1``
    (columns ``j-2 .. j+2``) and ``(i, j-2), (i, j-1)``. A plain convolution whose masked weights are
    zero and receive no gradient, so it converts to an integer layer like any other."""

    def __init__(self, channels: int, out_channels: int, kernel_size: int = 5):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(channels, out_channels, kernel_size)
        mask = torch.ones_like(self.conv.weight)
        mask[:, :, kernel_size - 1, kernel_size // 2:] = 0
        self.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():
            self.conv.weight.mul_(mask)
        self.conv.weight.register_hook(lambda grad: grad * self.mask)

    @property
    def padding(self) -> list[int]:
        """``F.pad`` widths ``[left, right, top, bottom]``: the window ends on the current row."""
        k = self.kernel_size
        return [k // 2, k // 2, k - 1, 0]

    def forward(self, r_hat: Tensor) -> Tensor:
        return self.conv(F.pad(r_hat, self.padding))

    def at(self, padded: Tensor, i: int, j: int) -> Tensor:
        """The output at ``(i, j)``, ``[B, out, 1, 1]``, from the already padded residual."""
        k = self.kernel_size
        return self.conv(padded[..., i : i + k, j : j + k])


@ENTROPY_MODELS.register("spatiotemporal")
class SpatiotemporalEntropyModel(HyperpriorEntropyModel):
    """STEM's P-frame entropy model (see the module docstring). Its methods take the reference
    latent ``y_hat_{t-1}`` ``[B, M, h, w]`` besides ``y``; ``quantizer="noise"`` (STEM trains the
    entropy model alone, on a frozen autoencoder)."""

    refinable = False  # P-frames code a residual against a reference: not refined (yet)

    def __init__(self, N: int, M: int, spatial: str = "masked", residual_rate: str = "rounded",
                 context_input: str = "rounded", residual_grid: str = "reference", mean_offsets: int = 16,
                 **options):
        if spatial not in SPATIAL_PRIORS:
            raise ValueError(f"spatial must be one of {', '.join(SPATIAL_PRIORS)}, got {spatial!r}")
        if residual_grid not in RESIDUAL_GRIDS:
            raise ValueError(f"residual_grid must be one of {', '.join(RESIDUAL_GRIDS)}, got {residual_grid!r}")
        self.residual_grid = residual_grid
        for name, value in (("residual_rate", residual_rate), ("context_input", context_input)):
            if value not in TRAINING_INPUTS:
                raise ValueError(f"{name} must be one of {', '.join(TRAINING_INPUTS)}, got {value!r}")
        self.residual_rate, self.context_input = residual_rate, context_input
        if mean_offsets and residual_grid != "reference":
            raise ValueError(f"mean_offsets needs residual_grid='reference', got {residual_grid!r}")
        super().__init__(N, M, h_a=stem_hyper_analysis(N, M), h_s=stem_hyper_synthesis(N, M), **options)
        if residual_grid == "reference":
            self.gaussian_conditional = GridGaussianConditional(mean_offsets, scale_levels=self.gaussian_conditional.scale_levels)
        self.spatial = spatial
        self.temporal_prior = temporal_prior(M)
        if spatial == "masked":
            self.context = CausalContext(M, 2 * M)
        elif spatial == "checkerboard":
            self.context = CheckerboardSpatialContext(M, 2 * M)
        in_channels = (6 if spatial != "none" else 4) * M
        self.entropy_parameters = stem_entropy_parameters(in_channels, M)
        self.integer_networks(self.temporal_prior, self.entropy_parameters, *([self.context] if spatial != "none" else []))
        # The layers that read quantised latents (the reference, the decoded residual) keep their grid
        # at every rate: 15-bit inputs where the networks are 8-bit.
        wide_inputs(self.temporal_prior[0])
        if spatial != "none":
            wide_inputs(self.context.conv)

    # Every method takes the reference; the image interface's forward(y) has no meaning here.
    def forward(self, y: Tensor, reference: Tensor, level=None) -> dict:
        z = self.h_a(torch.cat([y, reference], 1))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        rounded = self.training and self.residual_rate == "rounded"
        step = self._step((RoundedRateStep if rounded else QuantizeStep)(self.gaussian_conditional, self.quantizer), level)
        r_hat, y_likelihoods = self.code_residual(y - reference, self.h_s(z_hat), self.temporal_prior(reference), step)
        return {"y_hat": r_hat + reference, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def quantize(self, y: Tensor, reference: Tensor, level=None) -> Tensor:
        z_hat = quantize_factorized(self.entropy_bottleneck, self.h_a(torch.cat([y, reference], 1)))
        step = self._step(EncodeStep(self.gaussian_conditional, _NullEncoder()), level)
        r_hat, _ = self.code_residual(y - reference, self.h_s(z_hat), self.temporal_prior(reference), step)
        return r_hat + reference

    def compress(self, y: Tensor, reference: Tensor, coder, level=None) -> tuple[list[bytes], Tensor]:
        z_encoder, y_encoder = coder.encoder(), coder.encoder()
        z_hat = encode_factorized(self.entropy_bottleneck, self.h_a(torch.cat([y, reference], 1)), z_encoder)
        step = self._step(EncodeStep(self.gaussian_conditional, y_encoder), level)
        r_hat, _ = self.code_residual(y - reference, self.h_s(z_hat), self.temporal_prior(reference), step)
        return [y_encoder.finish(), z_encoder.finish()], r_hat + reference

    def decompress(self, streams: list[bytes], reference: Tensor, coder, level=None) -> Tensor:
        """``y_hat_t`` of one frame; the latent's shape is the reference's."""
        h, w = reference.shape[-2:]
        z_hat = decode_factorized(self.entropy_bottleneck, coder.decoder(streams[1]), (1, self.N, h // 4, w // 4))
        step = self._step(DecodeStep(self.gaussian_conditional, coder.decoder(streams[0])), level)
        r_hat, _ = self.code_residual(None, self.h_s(z_hat), self.temporal_prior(reference), step)
        return r_hat + reference

    def code_residual(self, r: Tensor | None, hyper: Tensor, temporal: Tensor, step):
        """Quantise, encode or decode the residual ``r = y_t - y_hat_{t-1}`` given the hyper and
        temporal features; returns ``(r_hat, likelihoods or None)``."""
        features = torch.cat([hyper, temporal], 1)
        if self.spatial == "none":
            return step(r, *self.entropy_parameters(features).chunk(2, 1))
        if self.spatial == "checkerboard":
            return code_checkerboard(r, features, step, self.entropy_parameters, self.context)
        if isinstance(split_gain(step)[1], QuantizeStep):
            # Parallel pass (estimates only; coding is serial and exact): the context sees round(r),
            # as the official code, or r + noise in training (context_input="noise").
            noisy = self.training and self.context_input == "noise"
            r_tilde = r + torch.empty_like(r).uniform_(-0.5, 0.5) if noisy else torch.round(r)
            scales, means = self.entropy_parameters(torch.cat([features, self.context(r_tilde)], 1)).chunk(2, 1)
            return step(r, scales, means)
        return self._code_serially(r, features, step), None

    def _code_serially(self, r: Tensor | None, features: Tensor, step) -> Tensor:
        batch, _, h, w = features.shape
        padding = self.context.padding
        padded = features.new_zeros(batch, self.M, h + padding[2], w + padding[0] + padding[1])
        top, left = padding[2], padding[0]
        for i in range(h):
            for j in range(w):
                context = self.context.at(padded, i, j)
                params = self.entropy_parameters(torch.cat([features[..., i : i + 1, j : j + 1], context], 1))
                r_ij = None if r is None else r[..., i : i + 1, j : j + 1]
                padded[..., top + i : top + i + 1, left + j : left + j + 1] = step(r_ij, *params.chunk(2, 1))[0]
        return padded[..., top:, left : left + w]
