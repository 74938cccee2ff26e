"""MLICv2's entropy model (Jiang, Zhai, Yang, Gao & Wang, "MLICv2: Enhanced Multi-Reference Entropy
Modeling for Learned Image Compression", arXiv:2504.19119, 2025).

**RECONSTRUCTION.** The authors have not released MLICv2's code. This is built from the paper's
description on top of MLIC++ (:mod:`.mlicpp`, the released code), reusing its classes; every layer
this file adds is this project's choice where the paper gives no number (listed below). It will
not load MLICv2 weights, and its rate-distortion results are not the paper's.

Each of MLICv2's elements is its own constructor switch, so an ablation is a config change; with
every switch off the model *is* MLIC++ (same modules, parameter names and outputs)::

    token_mixing         (transforms, :mod:`codeclab.transforms.mlicv2`) MetaFormer token-mixing blocks in g_a/g_s
    hyper_global         hyperprior-guided global correlation prediction for the first slice
    channel_reweighting  a squeeze-excitation gate over the contexts before each entropy-parameter network
    rope                 2D rotary position embedding in the attention contexts (local, inter, intra)
    selective            guided selective compression: elements the model predicts need no bits are not coded

Slice ``k`` (``s`` channels; MLIC++'s wiring, :mod:`.mlicpp`; ``hyper = h_s(z_hat)``)::

    k = 0, hyper_global:  r = hyper_reference(hyper)                 1x1, 2M -> s: the "previous slice" of slice 0
                          inter = global_inter_context_0(r)          linear attention over all positions
    k >= 1:               inter, channel from y_hat_<k               (MLIC++)
    anchors:      f = [inter, channel, hyper]  (k = 0: [inter, hyper] | [hyper])
                  (sigma, mu) = entropy_parameters_anchor_k(reweight_anchor_k(f))        -> select -> code anchors
                  y_hat_a += lrp_anchor_k(...)
    local  = local_context_k(y_hat_a)                                  (+ RoPE instead of the position bias)
    intra  = global_intra_context_k(y_hat_{k-1} | r, y_hat_a)          (k = 0: the hyperprior's attention map)
    non-anchors:  f = [local, intra, inter, channel, hyper]  (k = 0: [local, intra, inter, hyper] | [local, hyper])
                  (sigma, mu) = entropy_parameters_nonanchor_k(reweight_nonanchor_k(f))  -> select -> code non-anchors
                  y_hat_k += lrp_nonanchor_k(...)

Coding order (streams ``[y, z]``; one ``y`` stream; MLIC++'s order, only the selected elements of
each group are in it)::

    z ─► h_s ─► slice 0: anchors ─► non-anchors ─► slice 1: anchors ─► non-anchors ─► ... slice S-1

The switches, as reconstructed:

* ``hyper_global``. The paper predicts a global context for the first slice, which has no decoded
  slice before it, from the hyperprior. Here the hyper features, projected to ``s`` channels
  (``hyper_reference``), stand in for the previous slice in MLIC++'s two global contexts, which
  exist at index 0 only with this switch: ``global_inter_context[0]`` (linear attention over all
  positions of the projection, ``2s``) feeds both groups, and ``global_intra_context[0]`` uses the
  hyperprior's attention map (queries at non-anchors, keys at anchors of the projection) to gather the
  slice's decoded anchors for its non-anchors, as MLIC++ uses the previous slice's map for
  ``k >= 1``. The first slice's entropy-parameter networks widen to ``2M + 2s`` and ``2M + 6s``.
* ``channel_reweighting`` (:class:`ChannelReweighting`): per group, the concatenated context
  features ``f`` are multiplied by ``sigmoid(W2 GELU(W1 mean_hw(f)))`` (1x1 convolutions,
  reduction ``reweighting_reduction = 16``, at least 4 channels) before the entropy-parameter network.
* ``rope`` (:class:`RotaryEmbedding2d`): axial 2D RoPE (Heo et al., ECCV 2024; RoFormer's rotation
  per channel pair): of a head's ``d / 2`` channel pairs, the first ``ceil(d / 4)`` turn by the
  token's column, the others by its row, pair ``p`` of an axis with ``P`` pairs at frequency
  ``base^(-p / P)`` (``base = 10000``). In the local window attention ``q`` and ``k`` turn by their
  position in the window and the relative position bias (``relative_position_table``) is dropped;
  in the linear inter/intra attentions the normalised ``Q`` and ``K`` turn by their position in the
  latent (RoFormer's linear-attention form). No parameters.
* ``selective`` (:class:`SelectionNetwork`): per group, ``logit = net([log sigma', mu]) +
  4 log(sigma' / tau)`` with ``sigma' = max(sigma, 0.11)`` (the Gaussian conditional's bound),
  ``tau = selective_threshold = 0.2`` and ``net`` two 1x1 convolutions whose last starts near zero: the
  "guide" starts the selection at "code the elements whose scale exceeds tau" (at ``sigma = 0.2``,
  ``P(round(y - mu) = 0) > 0.98``) and training moves it. Elements with ``logit <= 0`` are not coded:
  ``y_hat = mu``, likelihood 1 (no rate). The decoder recomputes the selection from ``(sigma, mu)``,
  which it has before decoding the group, so no side information is sent. Training: a straight-through
  mask (``hard + sigmoid(logit) - sigmoid(logit).detach()``) mixes ``y_hat`` and ``mu`` and weighs
  the rate (``likelihood ** mask``), so the rate-distortion loss itself trains the selection.
  Off by default (the other switches are on): the paper says selective compression was
  "investigated", and an untrained model, whose scales start near the 0.11 bound, would skip most
  elements.

What the paper leaves unspecified, and the choice made here: every width, kernel and count of the
token-mixing block and where it goes (:mod:`codeclab.transforms.mlicv2`); the form of the hyperprior
guidance (a 1x1 projection of ``h_s``'s output into MLIC++'s own inter/intra modules); the gate's
form, input and reduction; the RoPE frequency base, axis split and where it is applied; the
selection's predictor, guide, threshold and training (jointly, no separate stage). MLICv2+'s
stochastic Gumbel annealing is not part of the model: :mod:`codeclab.codecs.refinement` applies it
to any refinable model, this one included (``relaxed`` is inherited).

Exact: the decoder reproduces the encoder's ``y_hat`` bit for bit under the floating-point
configuration that encoded (every switch computes from already decoded values only; as MLIC++, not
:attr:`portable`, no integer path). With every switch off: MLIC++ exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import ENTROPY_MODELS, DecodeStep, EncodeStep
from .gain import split_gain
from .gaussian import SCALES_MIN
from .mlicpp import EntropyParameters, LinearGlobalInterContext, LinearGlobalIntraContext, MLICPlusPlusEntropyModel, inter_heads


class RotaryEmbedding2d(nn.Module):
    """Axial 2D rotary position embedding: ``forward(x, rows, cols)`` rotates ``x`` ``[..., T, d]``
    (``d`` even) by the positions ``rows``, ``cols`` ``[T]`` of its ``T`` tokens (see the module
    docstring for the frequencies). No parameters."""

    def __init__(self, base: float = 10000.0):
        super().__init__()
        self.base = float(base)

    def angles(self, d: int, rows: Tensor, cols: Tensor) -> Tensor:
        """``[T, d / 2]``: the angle of each channel pair at each token."""
        if d % 2:
            raise ValueError(f"RoPE needs an even head width, got {d}")
        pairs = d // 2
        x_pairs = (pairs + 1) // 2
        y_pairs = pairs - x_pairs

        def frequencies(n):
            return self.base ** (-torch.arange(n, device=rows.device, dtype=torch.float32) / max(n, 1))

        return torch.cat([cols[:, None] * frequencies(x_pairs), rows[:, None] * frequencies(y_pairs)], dim=1)

    def forward(self, x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        angles = self.angles(x.shape[-1], rows, cols).to(x.dtype)
        cos, sin = angles.cos(), angles.sin()
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)

    def extra_repr(self) -> str:
        return f"base={self.base:g}"


class ChannelReweighting(nn.Module):
    """Squeeze-excitation gate over context features ``[B, C, h, w]``: ``f * sigmoid(W2 GELU(W1
    mean_hw(f)))``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.gate = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, features: Tensor) -> Tensor:
        return features * self.gate(features.mean(dim=(2, 3), keepdim=True))


class SelectionNetwork(nn.Module):
    """Selection logits of one group from its Gaussian parameters, ``(scales, means)`` ``[B, s, h, w]``
    -> ``[B, s, h, w]`` (code where > 0): a learned correction on the scale guide (module docstring)."""

    guide_gain = 4.0

    def __init__(self, channels: int, threshold: float = 0.2):
        super().__init__()
        self.threshold = float(threshold)
        self.net = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.GELU(), nn.Conv2d(channels, channels, 1))
        with torch.no_grad():  # starts near the guide alone, every layer trainable from the first step
            self.net[-1].weight.mul_(0.01)
            self.net[-1].bias.zero_()

    def forward(self, scales: Tensor, means: Tensor) -> Tensor:
        log_scales = scales.clamp_min(SCALES_MIN).log()
        guide = self.guide_gain * (log_scales - math.log(self.threshold))
        return guide + self.net(torch.cat([log_scales, means], dim=1))

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:g}"


@ENTROPY_MODELS.register("mlicv2")
class MLICv2EntropyModel(MLICPlusPlusEntropyModel):
    """MLICv2 (RECONSTRUCTION, see the module docstring): MLIC++ plus four switchable elements.

    Args:
        N, M, num_slices, window, parameter_hidden, channel_hidden, lrp_hidden, quantizer, rate options:
            as :class:`~.mlicpp.MLICPlusPlusEntropyModel`.
        hyper_global: hyperprior-guided global contexts for the first slice.
        channel_reweighting: a squeeze-excitation gate (``reweighting_reduction``) before every
            entropy-parameter network.
        rope: 2D RoPE (``rope_base``) in the local, inter and intra attentions (instead of the
            local context's relative position bias).
        selective: guided selective compression (``selective_threshold``: the guide's scale).
    """

    def __init__(self, N: int, M: int, num_slices: int = 10, window: int = 5,
                 parameter_hidden: Sequence[int] = (320, 256, 128), channel_hidden: Sequence[int] = (192, 128),
                 lrp_hidden: Sequence[int] = (224, 128), quantizer: str = "ste", hyper_global: bool = True,
                 channel_reweighting: bool = True, rope: bool = True, selective: bool = False,
                 reweighting_reduction: int = 16, rope_base: float = 10000.0, selective_threshold: float = 0.2,
                 **rate_options):
        super().__init__(N, M, num_slices, window, parameter_hidden, channel_hidden, lrp_hidden, quantizer,
                         **rate_options)
        s = self.slice_channels
        self.hyper_global, self.channel_reweighting = bool(hyper_global), bool(channel_reweighting)
        self.rope, self.selective = bool(rope), bool(selective)
        if self.rope and s % 4:
            raise ValueError(f"rope needs slices of a multiple of 4 channels (even head widths), got {s}")
        if self.hyper_global:
            self.hyper_reference = nn.Conv2d(2 * M, s, 1)
            self.global_inter_context[0] = LinearGlobalInterContext(s, 2 * s, inter_heads(s))
            self.global_intra_context[0] = LinearGlobalIntraContext(s)
            hidden = tuple(parameter_hidden)
            self.entropy_parameters_anchor[0] = EntropyParameters(2 * M + 2 * s, 2 * s, hidden)
            self.entropy_parameters_nonanchor[0] = EntropyParameters(2 * M + 6 * s, 2 * s, hidden)
        if self.rope:
            self.rotary = RotaryEmbedding2d(rope_base)
            for context in self.local_context:
                context.rotary = self.rotary
                context.relative_position_table = None
                context.relative_position_index = None
            for context in [*self.global_inter_context, *self.global_intra_context]:
                if context is not None:
                    context.rotary = self.rotary
        if self.channel_reweighting:
            for kind in ("anchor", "nonanchor"):
                networks = getattr(self, f"entropy_parameters_{kind}")
                setattr(self, f"context_reweighting_{kind}", nn.ModuleList(
                    ChannelReweighting(n.fusion[0].in_channels, reweighting_reduction) for n in networks))
        if self.selective:
            self.selector_anchor = nn.ModuleList(SelectionNetwork(s, selective_threshold) for _ in range(num_slices))
            self.selector_nonanchor = nn.ModuleList(SelectionNetwork(s, selective_threshold) for _ in range(num_slices))

    def first_slice_reference(self, hyper):
        return self.hyper_reference(hyper) if self.hyper_global else None

    def slice_parameters(self, kind, i, features):
        if self.channel_reweighting:
            features = [getattr(self, f"context_reweighting_{kind}")[i](torch.cat(features, dim=1))]
        return super().slice_parameters(kind, i, features)

    def selection(self, kind: str, i: int, scales: Tensor, means: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(selected, logits)`` of a group: the boolean elements to code (inside the spatial
        ``mask`` only) and the selection logits."""
        logits = getattr(self, f"selector_{kind}")[i](scales, means)
        return (logits > 0) & mask, logits

    def code_group(self, step, kind, i, y, scales, means, mask):
        if not self.selective:
            return super().code_group(step, kind, i, y, scales, means, mask)
        selected, logits = self.selection(kind, i, scales, means, mask)
        skipped = torch.where(mask, means, 0.0)  # not coded: the mean (zero outside the group, as a step returns)
        _, inner = split_gain(step)
        if isinstance(inner, (EncodeStep, DecodeStep)):  # code exactly the selected elements
            if not selected.any():
                return skipped, None
            values, _ = step(y, scales, means, selected)
            return torch.where(selected, values, skipped), None
        # Quantise/relax the whole group, then mix: a straight-through mask trains the selection.
        values, likelihoods = step(y, scales, means, mask)
        soft = torch.sigmoid(logits) * mask
        through = soft - soft.detach()
        weight = selected.to(values.dtype) + through
        y_hat = torch.where(selected, values, skipped) + through * (values - means)
        return y_hat, None if likelihoods is None else likelihoods.pow(weight)
