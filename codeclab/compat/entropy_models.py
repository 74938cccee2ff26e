"""First versions of entropy models whose live class has since moved to its paper's code, kept
so that the model files written with them keep decoding (the package docstring says when)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..entropy_models.autoregressive import AutoregressiveEntropyModel
from ..entropy_models.acgc import ACGCEntropyModel, ChannelAttentionContext, GlobalInterAttention
from ..entropy_models.bounded import BoundedLatentImage
from ..entropy_models.base import ENTROPY_MODELS, default_hidden, entropy_parameters
from ..entropy_models.channelwise import ChannelwiseEntropyModel, LatentResidualPrediction
from ..entropy_models.checkerboard import CheckerboardSpatialContext, code_checkerboard
from ..entropy_models.factorized import EntropyBottleneck
from ..entropy_models.mixture import GaussianMixtureConditional


@ENTROPY_MODELS.register("acgc_v1")
class ACGCEntropyModelV1(ACGCEntropyModel):
    """CodecLab's first ACGC (model files before format 3). Slice ``i``, with
    ``F_i = [h_s(z_hat), CA_i(y_hat_<i), GA_i(h_s(z_hat), y_hat_<i)]`` (each context ``2s`` channels)::

        anchors (i + j even):  (sigma, mu) = EP_i([F_i, 0])
        non-anchors:           (sigma, mu) = EP_i([F_i, Conv5x5(y_hat_i anchors)])
        y_hat_i += 0.5 tanh(LRP_i([F_i, y_hat_i]))

    one parameter network shared by anchors and non-anchors, global attention queried from the
    hyperprior (width ``attention_dim``, default ``M/5``; ``heads`` for both contexts), noisy ``z``.
    """

    hyper_quantizer = "noise"

    def __init__(self, N: int, M: int, num_slices: int = 10, hidden: int | None = None, attention_dim: int | None = None,
                 heads: int = 4, global_grid: int = 16, quantizer: str = "ste", **rate_options):
        # Read by build_contexts, which the live constructor calls (plain ints: no Module state yet).
        self.attention_dim, self.heads = attention_dim or M // 5, heads
        super().__init__(N, M, num_slices, hidden, global_grid, quantizer, **rate_options)

    def build_contexts(self, s: int, hidden: int, global_grid: int) -> None:
        M, lrp, slices = self.M, (hidden, hidden // 2), range(1, self.num_slices)
        features = [2 * M + (4 * s if i else 0) for i in range(self.num_slices)]
        self.channel_contexts = nn.ModuleList(ChannelAttentionContext(i * s, 2 * s, self.heads) for i in slices)
        self.global_contexts = nn.ModuleList(
            GlobalInterAttention(2 * M, i * s, 2 * s, self.attention_dim, self.heads, global_grid) for i in slices)
        self.spatial_contexts = nn.ModuleList(CheckerboardSpatialContext(s, 2 * s) for _ in range(self.num_slices))
        self.entropy_parameters = nn.ModuleList(entropy_parameters(f + 2 * s, hidden, 2 * s) for f in features)
        self.lrp_transforms = nn.ModuleList(LatentResidualPrediction(f + s, lrp, s, (3, 3, 3)) for f in features)

    def code_latent(self, y, hyper, step):
        slices = y.chunk(self.num_slices, 1) if y is not None else [None] * self.num_slices
        y_hats, likelihoods = [], []
        for i, y_slice in enumerate(slices):
            features = [hyper]
            if i:
                decoded = torch.cat(y_hats, dim=1)
                features += [self.channel_contexts[i - 1](decoded), self.global_contexts[i - 1](hyper, decoded)]
            features = torch.cat(features, dim=1)
            y_hat, lik = code_checkerboard(y_slice, features, step, self.entropy_parameters[i], self.spatial_contexts[i])
            y_hats.append(y_hat + self.lrp_transforms[i](torch.cat([features, y_hat], dim=1)))
            likelihoods.append(lik)
        return torch.cat(y_hats, dim=1), (None if likelihoods[0] is None else torch.cat(likelihoods, dim=1))


@ENTROPY_MODELS.register("charm_v1")
class ChannelwiseEntropyModelV1(ChannelwiseEntropyModel):
    """CodecLab's first ChARM (model files before format 3): one shared mean-scale ``h_s``, 3x3
    slice networks ``hidden -> hidden/2`` (one int, default ``7M/10``), noisy ``z``."""

    hyper_quantizer = "noise"
    kernels = (3, 3, 3)

    @staticmethod
    def hyper_synthesis(N: int, M: int) -> None:
        return None  # the hyperprior's own mean-scale h_s

    @staticmethod
    def slice_widths(M: int, hidden: int | None) -> tuple[int, int]:
        width = hidden or default_hidden(M)
        return width, width // 2


class GaussianMixtureConditionalV1(GaussianMixtureConditional):
    """CodecLab's first mixture order (model files before format 5): weight logits, means, scales,
    each ``[B, K M, ...]`` with component ``k`` in channels ``k M .. (k + 1) M``; compressai's
    likelihood bound."""

    likelihood_bound = 1e-9

    def split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        shape = (params.shape[0], self.components, -1, *params.shape[2:])
        return self.bounded(*(t.reshape(shape) for t in params.chunk(3, 1)))


@ENTROPY_MODELS.register("autoregressive_v1")
class AutoregressiveEntropyModelV1(AutoregressiveEntropyModel):
    """CodecLab's first Gaussian mixture of cheng2020 (model files before format 5): mbt2018's
    parameter widths ``10M/3, 8M/3`` with a bias, no clip of ``y``, ``h_a`` trained through ``y``,
    and :class:`GaussianMixtureConditionalV1`'s order (``leaky_slope``, ``robust_tails``: unused)."""

    def __init__(self, N: int, M: int, quantizer: str = "noise", arithmetic: str = "float", hyper: str = "mbt2018",
                 components: int = 1, leaky_slope: float = 0.2, robust_tails: bool = True):
        super().__init__(N, M, quantizer, arithmetic, hyper)  # the single Gaussian's networks
        self.components = int(components)
        if self.components > 1:
            self.mixture = GaussianMixtureConditionalV1(self.components)
            self.entropy_parameters = entropy_parameters(4 * M, (10 * M // 3, 8 * M // 3), 3 * self.components * M)

    def hyper_input(self, y):
        return y

    def clipped(self, y: Tensor) -> Tensor:
        return y


@ENTROPY_MODELS.register("bounded_v1")
class BoundedLatentImageV1(BoundedLatentImage):
    """CodecLab's first WaLLoC mapping (model files before format 3): ``q = Phi(y) (2^b - 1)`` in
    [0, 255], what the synthesis sees rescaled linearly to [-1, 1], and a factorized density of
    the noisy integers as a differentiable rate term."""

    def __init__(self, M: int, bits: int = 8, lossless_format: str = "png"):
        super().__init__(M, bits, lossless_format)
        self.low, self.high, self.offset = 0, 2**bits - 1, 0
        self.entropy_bottleneck = EntropyBottleneck(M, init_scale=self.high)

    def bounded(self, y: Tensor) -> Tensor:
        return torch.special.ndtr(y) * self.high

    def decoder_input(self, q: Tensor) -> Tensor:
        return q * (2 / self.high) - 1.0

    def rate(self, q: Tensor) -> dict:
        return {"y": self.entropy_bottleneck.channel_likelihood(q)}
