"""First versions of entropy models whose live class has since moved to its paper's code, kept
so that the model files written with them keep decoding (the package docstring says when)."""

from __future__ import annotations

import torch
from torch import nn

from ..entropy_models.acgc import ACGCEntropyModel, ChannelAttentionContext, GlobalInterAttention
from ..entropy_models.base import ENTROPY_MODELS, default_hidden, entropy_parameters
from ..entropy_models.channelwise import ChannelwiseEntropyModel, LatentResidualPrediction
from ..entropy_models.checkerboard import CheckerboardSpatialContext, code_checkerboard


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
