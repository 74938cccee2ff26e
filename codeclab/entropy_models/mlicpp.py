"""MLIC++'s multi-reference entropy model (Jiang & Wang, "MLIC++: Linear Complexity Multi-Reference
Entropy Modeling for Learned Image Compression", ICML 2023 Neural Compression Workshop,
arXiv:2307.15421), as the released code defines it (JiangWeibeta/MLIC, ``MLIC++/models/mlicpp.py``,
``modules/transform/{context,entropy,quantization}.py``, ``utils/ckbd.py``), with its parameter names.

``y`` ``[B, M, h, w]`` is split into ``S`` slices of ``s = M/S`` channels (10 x 32); each slice is
coded as a checkerboard, anchors at ``(i + j)`` odd (``ckbd_anchor``: rows 0::2 columns 1::2,
rows 1::2 columns 0::2). ``hyper = h_s(z_hat)`` (``2M``: scale, mean features). Slice ``k``::

    channel = channel_context_k(y_hat_<k)        4s   (3x3 convs)                      k >= 1
    inter   = global_inter_context_k(y_hat_<k)   2s   (linear attention over all positions)
    anchors:      (sigma, mu) = entropy_parameters_anchor_k([inter, channel, hyper])   -> decode anchors
                  y_hat_a += lrp_anchor_k([mu_hyper, y_hat_<k, y_hat_a])               (at anchors)
    local   = local_context_k(y_hat_a)           2s   (5x5 window attention among anchors)
    intra   = global_intra_context_k(y_hat_{k-1}, y_hat_a)  2s  (linear attention; k >= 1)
    non-anchors:  (sigma, mu) = entropy_parameters_nonanchor_k([local, intra, inter, channel, hyper])
                  -> decode non-anchors
                  y_hat_k += lrp_nonanchor_k([mu_hyper, y_hat_<k, y_hat_k])            (at non-anchors)

For the first slice (nothing decoded before it) the released code has no channel, inter or intra
context: the anchors get ``entropy_parameters_anchor_0(hyper)`` (``2M`` inputs) and the non-anchors
``entropy_parameters_nonanchor_0([local, hyper])`` (``2M + 2s``); ``channel_context``,
``global_inter_context`` and ``global_intra_context`` hold ``None`` at index 0, as there.

Coding order (streams ``[y, z]``; one ``y`` stream, groups in this order)::

    z ─► h_s ─► slice 0: anchors ─► non-anchors ─► slice 1: anchors ─► non-anchors ─► ... slice S-1

Decoding runs every network once per slice: ``2S`` entropy-parameter passes, ``S`` local-context
passes, ``S - 1`` of each of the channel, inter and intra contexts.

:mod:`.mlicv2` (a reconstruction of MLICv2) reuses this model through three hooks, MLIC++'s
identity here: :meth:`~MLICPlusPlusEntropyModel.first_slice_reference` (what the first slice's
global contexts attend; None), :meth:`~MLICPlusPlusEntropyModel.slice_parameters` (the
entropy-parameter call) and :meth:`~MLICPlusPlusEntropyModel.code_group` (one group through the
step); and through the attention contexts' ``rotary`` attribute (None).

Linear attention (:func:`linear_attention`; the global contexts, per head of ``d`` channels):
``K`` softmax-normalised over the tokens, ``Q`` over the channels, output ``(K V^T)^T Q``
(``[d, d]`` then ``[d, L]``: linear in the number of tokens ``L``). Inter: ``Q, K, V`` from the
decoded slices at all positions, ``s k / 32`` heads (``k`` at the paper's sizes). Intra: ``Q``
from the previous slice's non-anchors, ``K`` from its anchors, ``V`` from the current slice's
decoded anchors; keys and values at anchors only, queries at non-anchors only, 2 heads. Each
``Q, K, V`` is a 1x1 then a depth-wise 3x3 convolution; then a 5x5 re-projection and a GELU MLP.

Local context (:class:`LocalContext`): LayerNorm, a linear ``q, k, v``; in the 5x5 window around
every position, scaled dot-product attention among the window's positions with a relative position
bias (Swin), a mask of ``-100`` unless both query and key are anchors, then a 5x5 convolution over
the window's outputs (``C -> 2C``), a linear projection and a residual GELU MLP on LayerNorm.

Exact with respect to the released code: every layer, width, kernel, activation, head layout and
parameter name (:mod:`codeclab.codecs.mlicpp_interop` maps the released ``state_dict``; at
``N, M, S = 192, 320, 10`` the codec has 83,501,408 parameters, the paper's 83.5M), the wiring
above, LRP ``0.5 tanh`` on both passes, straight-through rounding ``round(y - mu) + mu`` of ``y``
and ``round(z - median) + median`` of ``z`` in training (``quantizer="ste"``), the rate of ``y``
from noisy ``y`` (compressai's Gaussian conditional in training mode). Deviations:

* The released ``ckbd_*_sequeeze`` gathers assume an even latent width; here the attention of the
  intra context masks the same tokens instead of gathering them (softmax over the anchors only,
  zero queries at anchors), the same numbers up to summation order, for any ``h, w``.
* The local-context mask is ``-100`` unless query and key are both anchors, as the repository's
  ``modules/transform/context.py`` and one stored version of ``MLIC++/.../context.py`` build it; another stored
  version of the latter applies its second ``masked_fill`` to the already filled tensor
  (``!= 0``), which zeroes the whole mask. The inputs there are zero at non-anchors either way,
  so both are causal; this follows the intended mask.
* The released code computes the anchors' likelihood and the non-anchors' in one call with merged
  parameters, here in two (:class:`~.base.LatentStep` per group): the same values.
* ``num_slices`` and the widths of the parameter, channel-context and LRP networks are arguments
  (defaults: the released 320-256-128, 192-128, 224-128) so that tests can build small models;
  the inter context keeps ``s k / 32`` heads, at least one (the released formula gives zero heads
  below 32 channels).
* No integer path (``arithmetic`` must be ``"float"``): files decode under the floating-point
  configuration that wrote them, as every attention context here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transforms import mlicpp as transforms
from .base import ENTROPY_MODELS, checkerboard_masks
from .hyperprior import HyperpriorEntropyModel

ANCHOR_PARITY = 1  # anchors at (i + j) odd, as utils/ckbd.py
MASKED = -100.0  # the released local-context mask value (added to the attention logits)


def linear_attention(queries: Tensor, keys: Tensor, values: Tensor, heads: int,
                     key_mask: Tensor | None = None, query_mask: Tensor | None = None,
                     rotary: nn.Module | None = None, grid: tuple[int, int] | None = None) -> Tensor:
    """Efficient (linear) attention, ``[B, C, L]`` each -> ``[B, C, L]``, over ``heads`` contiguous
    channel groups of ``d = C / heads``: per head ``K = softmax_tokens(k)``, ``Q = softmax_channels(q)``,
    ``out = (K V^T)^T Q``. ``key_mask`` ``[L]``: the tokens keys and values come from (softmax over
    them only); ``query_mask`` ``[L]``: the tokens that query (output zero elsewhere).

    ``rotary`` (MLICv2's RoPE; None in MLIC++): rotates ``Q`` and ``K`` (after the softmaxes, as
    RoFormer's linear attention) by the row and column of each token on the ``grid`` ``(h, w)``."""
    b, c, length = queries.shape
    if c % heads:
        raise ValueError(f"{c} channels do not split into {heads} heads")

    def split(t):
        return t.reshape(b, heads, c // heads, length)

    queries, keys, values = split(queries), split(keys), split(values)
    if key_mask is not None:
        keys = keys.masked_fill(~key_mask, float("-inf"))
        values = torch.where(key_mask, values, 0.0)
    keys = keys.softmax(dim=-1)
    queries = queries.softmax(dim=2)
    if query_mask is not None:
        queries = torch.where(query_mask, queries, 0.0)
    if rotary is not None:
        rows, cols = grid_positions(*grid, queries.device)
        queries = rotary(queries.transpose(-2, -1), rows, cols).transpose(-2, -1)
        keys = rotary(keys.transpose(-2, -1), rows, cols).transpose(-2, -1)
    context = keys @ values.transpose(-2, -1)  # [B, heads, d, d]
    return (context.transpose(-2, -1) @ queries).reshape(b, c, length)


def grid_positions(h: int, w: int, device=None) -> tuple[Tensor, Tensor]:
    """Row and column (float) of each of the ``h w`` tokens of a row-major grid."""
    index = torch.arange(h * w, device=device)
    return torch.div(index, w, rounding_mode="floor").float(), (index % w).float()


def _projection(dim: int) -> nn.Sequential:
    """``Q``, ``K`` or ``V``: a 1x1 and a depth-wise 3x3 convolution."""
    return nn.Sequential(nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))


def _mlp(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 to ``2 out``, GELU, depth-wise 3x3, GELU, 1x1 to ``out``."""
    hidden = 2 * out_channels
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.GELU(),
        nn.Conv2d(hidden, out_channels, 1),
    )


class LinearGlobalInterContext(nn.Module):
    """Global inter-slice context from the decoded slices, ``[B, dim, h, w] -> [B, out, h, w]``:
    linear attention over all positions, ``reprojection`` (5x5, to ``3 out / 2``), then
    ``skip(a) + mlp(a)``."""

    def __init__(self, dim: int, out_dim: int, num_heads: int):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.rotary: nn.Module | None = None  # MLICv2's RoPE (:mod:`.mlicv2`); None in MLIC++
        self.keys, self.queries, self.values = _projection(dim), _projection(dim), _projection(dim)
        self.reprojection = nn.Conv2d(dim, out_dim * 3 // 2, 5, padding=2)
        self.mlp = _mlp(out_dim * 3 // 2, out_dim)
        self.skip = nn.Conv2d(out_dim * 3 // 2, out_dim, 1)

    def forward(self, decoded: Tensor) -> Tensor:
        b, c, h, w = decoded.shape
        q, k, v = (f(decoded).reshape(b, c, h * w) for f in (self.queries, self.keys, self.values))
        out = linear_attention(q, k, v, self.num_heads, rotary=self.rotary, grid=(h, w))
        attention = self.reprojection(out.reshape(b, c, h, w))
        return self.skip(attention) + self.mlp(attention)


class LinearGlobalIntraContext(nn.Module):
    """Global intra-slice context of the non-anchors, ``-> [B, 2 dim, h, w]``: queries from the
    previous slice's non-anchors, keys from its anchors, values from the current slice's decoded
    anchors (the tokens of each restricted by the checkerboard), ``reprojection`` (5x5), ``a + mlp(a)``."""

    def __init__(self, dim: int, num_heads: int = 2):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.rotary: nn.Module | None = None  # MLICv2's RoPE (:mod:`.mlicv2`); None in MLIC++
        self.keys, self.queries, self.values = _projection(dim), _projection(dim), _projection(dim)
        self.reprojection = nn.Conv2d(dim, dim * 2, 5, padding=2)
        self.mlp = _mlp(dim * 2, dim * 2)

    def forward(self, previous: Tensor, anchors: Tensor, anchor: Tensor) -> Tensor:
        """``previous``: the decoded previous slice; ``anchors``: this slice's decoded anchors
        (zero elsewhere); ``anchor``: the boolean ``[h, w]`` anchor mask."""
        b, c, h, w = previous.shape
        non_anchor = ~anchor
        q = self.queries(torch.where(non_anchor, previous, 0.0)).reshape(b, c, h * w)
        k = self.keys(torch.where(anchor, previous, 0.0)).reshape(b, c, h * w)
        v = self.values(anchors).reshape(b, c, h * w)
        out = linear_attention(q, k, v, self.num_heads, key_mask=anchor.reshape(-1), query_mask=non_anchor.reshape(-1),
                               rotary=self.rotary, grid=(h, w))
        attention = self.reprojection(out.reshape(b, c, h, w))
        return attention + self.mlp(attention)


def relative_position_index(window: int) -> Tensor:
    """Swin's ``[window^2, window^2]`` index into a ``(2 window - 1)^2`` table of relative offsets."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


class _MLP(nn.Module):
    """``fc2(GELU(fc1(x)))`` on ``[..., C]`` (the released ``MLP``, without its zero dropout)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LocalContext(nn.Module):
    """Local context of the non-anchors, ``[B, dim, h, w]`` (decoded anchors, zero elsewhere) ->
    ``[B, 2 dim, h, w]``: masked window attention (see the module docstring).

    Heads take channels ``c`` with ``c % num_heads == head`` (the released layout); ``q`` is scaled
    by ``head_dim^-1/2``; the window is zero-padded after the ``qkv`` projection. MLICv2's RoPE
    (``rotary``, set on the instance; None in MLIC++) rotates ``q`` and ``k`` by their row and
    column in the window; a model that uses it instead of the relative position bias sets
    ``relative_position_table`` and ``relative_position_index`` to None.
    """

    relative_position_index: Tensor | None

    def __init__(self, dim: int, window_size: int = 5, mlp_ratio: float = 2.0, num_heads: int = 2):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"local context: {dim} channels do not split into {num_heads} heads")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.rotary: nn.Module | None = None  # MLICv2's RoPE (:mod:`.mlicv2`); None in MLIC++
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv_proj = nn.Linear(dim, dim * 3)
        self.relative_position_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_table, std=0.02)
        self.proj = nn.Linear(dim * 2, dim * 2)
        self.mlp = _MLP(dim * 2, int(dim * 2 * mlp_ratio), dim * 2)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim * 2)
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.fusion = nn.Conv2d(dim, dim * 2, window_size)

    def attention_mask(self, anchor: Tensor) -> Tensor:
        """``[h w, window^2, window^2]``: 0 where the query and the key position are both anchors
        (inside the image), ``-100`` elsewhere."""
        k = self.window_size
        windows = F.unfold(anchor[None, None].float(), k, padding=k // 2)[0].t()  # [L, k^2]
        both = windows[:, :, None] * windows[:, None, :]
        return torch.where(both == 1, 0.0, MASKED)

    def forward(self, anchors: Tensor, anchor: Tensor | None = None) -> Tensor:
        b, c, h, w = anchors.shape
        length, k2 = h * w, self.window_size**2
        if anchor is None:
            anchor = checkerboard_masks(h, w, anchors.device, ANCHOR_PARITY)[0]
        tokens = self.norm1(anchors.reshape(b, c, length).transpose(1, 2))
        qkv = self.qkv_proj(tokens).transpose(1, 2).reshape(b, 3 * c, h, w)  # channels (q|k|v, c)
        windows = F.unfold(qkv, self.window_size, padding=self.window_size // 2)  # [B, 3C k^2, L]
        windows = windows.reshape(b, 3, self.head_dim, self.num_heads, k2, length).permute(1, 0, 5, 3, 4, 2)
        q, k, v = windows[0] * self.scale, windows[1], windows[2]  # [B, L, heads, k^2, head_dim]
        if self.rotary is not None:
            rows, cols = grid_positions(self.window_size, self.window_size, anchors.device)
            q, k = self.rotary(q, rows, cols), self.rotary(k, rows, cols)
        attn = q @ k.transpose(-2, -1)
        if self.relative_position_table is not None:
            bias = self.relative_position_table[self.relative_position_index.reshape(-1)].reshape(k2, k2, -1)
            attn = attn + bias.permute(2, 0, 1)
        attn = (attn + self.attention_mask(anchor)[:, None]).softmax(dim=-1)
        out = (attn @ v).permute(0, 1, 3, 2, 4)  # [B, L, k^2, heads, head_dim]: channels head-major
        out = out.reshape(b * length, self.window_size, self.window_size, c).permute(0, 3, 1, 2)
        x = self.proj(self.fusion(out).reshape(b, length, 2 * c))
        x = x + self.mlp(self.norm2(x))
        return x.transpose(1, 2).reshape(b, 2 * c, h, w)


class ChannelContext(nn.Module):
    """Channel context from the decoded slices: three 3x3 convolutions with GELU, ``-> 4 out``
    (``fushion``: the released attribute name)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (192, 128)):
        super().__init__()
        first, second = hidden
        self.fushion = nn.Sequential(
            nn.Conv2d(in_dim, first, 3, padding=1), nn.GELU(), nn.Conv2d(first, second, 3, padding=1), nn.GELU(),
            nn.Conv2d(second, out_dim * 4, 3, padding=1),
        )

    def forward(self, decoded: Tensor) -> Tensor:
        return self.fushion(decoded)


class EntropyParameters(nn.Module):
    """1x1 convolutions ``in -> 320 -> 256 -> 128 -> out`` with GELU (``hidden``: other widths)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (320, 256, 128)):
        super().__init__()
        widths = (in_dim, *hidden, out_dim)
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 1), nn.GELU()]
        self.fusion = nn.Sequential(*layers[:-1])

    def forward(self, params: Tensor) -> Tensor:
        return self.fusion(params)


class LatentResidualPrediction(nn.Module):
    """``0.5 tanh`` of 3x3 convolutions ``in -> 224 -> 128 -> out`` with GELU."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (224, 128)):
        super().__init__()
        widths = (in_dim, *hidden, out_dim)
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1), nn.GELU()]
        self.lrp_transform = nn.Sequential(*layers[:-1])

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * torch.tanh(self.lrp_transform(x))


def inter_heads(channels: int, head_width: int = 32) -> int:
    """The inter context's ``channels / 32`` heads (the released ``slice_ch * i // 32``), at least
    one and a divisor of ``channels``."""
    heads = max(1, channels // head_width)
    while channels % heads:
        heads -= 1
    return heads


@ENTROPY_MODELS.register("mlicpp")
class MLICPlusPlusEntropyModel(HyperpriorEntropyModel):
    """MLIC++: slices x checkerboard with channel, global inter-slice, local and global intra-slice
    contexts and LRP (see the module docstring for the wiring, the coding order and what is exact).

    Args:
        N, M: channels of ``z`` and ``y``; ``num_slices``: ``S`` (``M`` divisible by it).
        window: the local context's window; ``parameter_hidden``, ``channel_hidden``, ``lrp_hidden``:
            widths of the entropy-parameter, channel-context and LRP networks (released: 320-256-128,
            192-128, 224-128).
        quantizer, rate options: as :class:`~.hyperprior.HyperpriorEntropyModel`.
    """

    def __init__(self, N: int, M: int, num_slices: int = 10, window: int = 5,
                 parameter_hidden: Sequence[int] = (320, 256, 128), channel_hidden: Sequence[int] = (192, 128),
                 lrp_hidden: Sequence[int] = (224, 128), quantizer: str = "ste", **rate_options):
        if rate_options.get("arithmetic", "float") != "float":
            raise ValueError("the mlicpp attention contexts have no integer path (arithmetic must be 'float')")
        if M % num_slices:
            raise ValueError(f"M={M} is not divisible into {num_slices} slices")
        super().__init__(N, M, quantizer, h_a=transforms.hyper_analysis(N, M), h_s=transforms.hyper_synthesis(N, M),
                         **rate_options)
        self.hyper_quantizer = "ste"  # z_hat = round(z - median) + median, straight-through
        self.num_slices = num_slices
        s = self.slice_channels = M // num_slices
        parameter_hidden, channel_hidden, lrp_hidden = tuple(parameter_hidden), tuple(channel_hidden), tuple(lrp_hidden)
        self.local_context = nn.ModuleList(LocalContext(s, window) for _ in range(num_slices))
        self.channel_context = nn.ModuleList(
            ChannelContext(s * i, s, channel_hidden) if i else None for i in range(num_slices))
        self.global_inter_context = nn.ModuleList(
            LinearGlobalInterContext(s * i, 2 * s, inter_heads(s * i)) if i else None for i in range(num_slices))
        self.global_intra_context = nn.ModuleList(LinearGlobalIntraContext(s) if i else None for i in range(num_slices))
        self.entropy_parameters_anchor = nn.ModuleList(
            EntropyParameters(2 * M + (6 * s if i else 0), 2 * s, parameter_hidden) for i in range(num_slices))
        self.entropy_parameters_nonanchor = nn.ModuleList(
            EntropyParameters(2 * M + (10 * s if i else 2 * s), 2 * s, parameter_hidden) for i in range(num_slices))
        self.lrp_anchor = nn.ModuleList(
            LatentResidualPrediction(M + (i + 1) * s, s, lrp_hidden) for i in range(num_slices))
        self.lrp_nonanchor = nn.ModuleList(
            LatentResidualPrediction(M + (i + 1) * s, s, lrp_hidden) for i in range(num_slices))

    @property
    def portable(self) -> bool:
        return False

    # Hooks (the identity of MLIC++ here; MLICv2, :mod:`.mlicv2`, overrides them).

    def first_slice_reference(self, hyper: Tensor) -> Tensor | None:
        """What the first slice's global contexts (``global_inter_context[0]``,
        ``global_intra_context[0]``) attend in place of decoded slices; None: the first slice has
        no global context (MLIC++)."""
        return None

    def slice_parameters(self, kind: str, i: int, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``(scales, means)`` of slice ``i``'s ``kind`` (``"anchor"``, ``"nonanchor"``) group from
        its context features (concatenated in this order)."""
        network = getattr(self, f"entropy_parameters_{kind}")[i]
        return network(torch.cat(features, dim=1)).chunk(2, 1)

    def code_group(self, step, kind: str, i: int, y, scales, means, mask):
        """Quantise/code one group through ``step`` (:class:`~.base.LatentStep`)."""
        return step(y, scales, means, mask)

    def code_latent(self, y, hyper, step):
        slices = y.chunk(self.num_slices, 1) if y is not None else [None] * self.num_slices
        hyper_means = hyper.chunk(2, 1)[1]
        anchor, non_anchor = checkerboard_masks(*hyper.shape[-2:], hyper.device, anchor_parity=ANCHOR_PARITY)
        y_hats, likelihoods = [], []
        for i, y_slice in enumerate(slices):
            reference = None
            if i:
                decoded = torch.cat(y_hats, dim=1)
                contexts = [self.global_inter_context[i](decoded), self.channel_context[i](decoded)]
            else:
                reference = self.first_slice_reference(hyper)
                contexts = [] if reference is None else [self.global_inter_context[0](reference)]
            scales, means = self.slice_parameters("anchor", i, [*contexts, hyper])
            y_anchor, lik_anchor = self.code_group(step, "anchor", i, y_slice, scales, means, anchor)
            y_anchor = y_anchor + anchor * self.lrp_anchor[i](torch.cat([hyper_means, *y_hats, y_anchor], dim=1))
            local = self.local_context[i](y_anchor, anchor)
            if i or reference is not None:
                intra = self.global_intra_context[i](y_hats[-1] if i else reference, y_anchor, anchor)
                features = [local, intra, *contexts, hyper]
            else:
                features = [local, hyper]
            scales, means = self.slice_parameters("nonanchor", i, features)
            y_non_anchor, lik_non_anchor = self.code_group(step, "nonanchor", i, y_slice, scales, means, non_anchor)
            y_hat = torch.where(anchor, y_anchor, y_non_anchor)
            y_hat = y_hat + non_anchor * self.lrp_nonanchor[i](torch.cat([hyper_means, *y_hats, y_hat], dim=1))
            y_hats.append(y_hat)
            likelihoods.append(None if lik_anchor is None else torch.where(anchor, lik_anchor, lik_non_anchor))
        return torch.cat(y_hats, dim=1), (None if likelihoods[0] is None else torch.cat(likelihoods, dim=1))
