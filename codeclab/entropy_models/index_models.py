"""Probability models for VQ codebook indices, coded with the C++ coder's categorical mode.

A VQ codec sends a grid of indices ``i``: ``[h, w]`` with values in ``[0, K)``. Three models give
each index an integer frequency row ``f`` (``[K]``, every entry >= 1, so any index is codable);
the coder normalises a row to ``2**24`` with integer arithmetic (:mod:`.native`), so the coded
distribution is a deterministic function of the row and the encoder and decoder agree exactly
whenever they compute the same rows.

Each model is a class of the :data:`INDEX_MODELS` registry with ``encode(indices, encoder)`` and
``decode(decoder, shape)``; a stream starts with the model's byte (:data:`INDEX_MODEL_IDS`).

* ``uniform``: :class:`UniformIndexModel` (Mao et al.'s baseline): ``f = 1``; ``log2(K)`` bits per index.
* ``static``: :class:`StaticIndexModel`, one learned integer histogram for every position
  (``f_k = count_k + 1`` over training-image indices); ``~ H(p_train)`` bits per index.
* ``transformer``: :class:`MaskedIndexTransformer`, a bidirectional transformer over the index
  grid with a [MASK] token. Positions are split into ``G`` groups by a 4x4 ordered-dither
  pattern; group ``g`` is coded with ``f = floor(softmax(logits) * 2**20) + 1`` computed from the
  grid in which groups ``>= g`` are masked, so the decoder, having decoded groups ``< g``, sees
  the same input. ``G`` forward passes per image. Exact on the same machine and build; like
  every learned prior it relies on the float network giving bit-identical logits on both sides.

The same transformer, trained also on random masks, predicts lost indices
(:meth:`MaskedIndexTransformer.recover`), the recovery step of Mao et al.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..registry import Registry

INDEX_MODELS = Registry("index model")
# The byte that names the index model at the start of a VQ stream (never reorder).
INDEX_MODEL_IDS = ("uniform", "static", "transformer")

# 4x4 ordered-dither (Bayer) ranks: consecutive ranks are spread over the block, so each group
# of a coarse-to-fine split sees context on every side.
_BAYER4 = torch.tensor([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]])
# Probability -> integer count scale for the transformer's rows (rows sum to <= 2**20 + K).
_PRIOR_SCALE = 2**20
# Rows of identical frequencies are sent in chunks of at most this many table entries.
_CHUNK_ENTRIES = 2**21


def _constant_rows(freqs: np.ndarray, n: int):
    """Yield ``[m, K]`` arrays repeating ``freqs`` for ``n`` rows in chunks (bounded memory)."""
    chunk = max(1, _CHUNK_ENTRIES // freqs.shape[0])
    for start in range(0, n, chunk):
        yield np.ascontiguousarray(np.broadcast_to(freqs, (min(chunk, n - start), freqs.shape[0])))


def _encode_constant_rows(indices: torch.Tensor, row: np.ndarray, encoder) -> None:
    flat = indices.reshape(-1).to(torch.int32).numpy()
    offset = 0
    for rows in _constant_rows(row, flat.size):
        encoder.encode_categorical(flat[offset : offset + len(rows)], rows)
        offset += len(rows)


def _decode_constant_rows(decoder, shape: tuple[int, int], row: np.ndarray) -> torch.Tensor:
    parts = [decoder.decode_categorical(rows) for rows in _constant_rows(row, shape[0] * shape[1])]
    return torch.from_numpy(np.concatenate(parts).astype(np.int64)).reshape(shape)


@INDEX_MODELS.register("uniform")
class UniformIndexModel(nn.Module):
    """Every index equally likely: ``log2(K)`` bits each."""

    def __init__(self, n_embed: int):
        super().__init__()
        self.n_embed = int(n_embed)

    def encode(self, indices: torch.Tensor, encoder) -> None:
        """Append the grid ``indices`` ``[h, w]`` (int64) to ``encoder``."""
        _encode_constant_rows(indices, np.ones(self.n_embed, np.int32), encoder)

    def decode(self, decoder, shape: tuple[int, int]) -> torch.Tensor:
        """The grid ``[h, w]`` (int64) that :meth:`encode` wrote."""
        return _decode_constant_rows(decoder, shape, np.ones(self.n_embed, np.int32))


@INDEX_MODELS.register("static")
class StaticIndexModel(nn.Module):
    """A learned static frequency table: ``counts``: int32 ``[K]``, all >= 1.

    Rate: ``-log2(counts[i] / sum(counts))`` bits per index (to the coder's 24-bit precision).
    """

    def __init__(self, n_embed: int):
        super().__init__()
        self.register_buffer("counts", torch.ones(int(n_embed), dtype=torch.int32))

    def encode(self, indices: torch.Tensor, encoder) -> None:
        _encode_constant_rows(indices, self.counts.numpy(), encoder)

    def decode(self, decoder, shape: tuple[int, int]) -> torch.Tensor:
        return _decode_constant_rows(decoder, shape, self.counts.numpy())

    @torch.no_grad()
    def fit(self, indices: torch.Tensor) -> None:
        """Set ``counts`` to the histogram of ``indices`` (any shape) plus one (Laplace)."""
        hist = torch.bincount(indices.reshape(-1).long(), minlength=self.counts.numel())
        # Scale so the sum stays well inside int32 while keeping the floor of 1 per symbol.
        scale = min(1.0, (2**30) / float(hist.sum().clamp_min(1)))
        self.counts.copy_((hist.double() * scale).floor().to(torch.int32) + 1)

    def probabilities(self) -> torch.Tensor:
        """The modelled distribution ``[K]`` (float, for rate estimates)."""
        counts = self.counts.double()
        return (counts / counts.sum()).float()


def group_map(height: int, width: int, groups: int) -> torch.Tensor:
    """Coding group of every grid position, int64 ``[height, width]`` in ``[0, groups)``.

    ``group(r, c) = bayer4[r % 4, c % 4] * groups // 16``: ``groups`` in {1, 2, 4, 8, 16}.
    """
    ranks = _BAYER4.repeat((height + 3) // 4, (width + 3) // 4)[:height, :width]
    return ranks * groups // 16


def _sinusoid_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sinusoidal position code ``[height * width, dim]``: half the channels per axis."""
    quarter = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, dtype=torch.float32) / max(quarter, 1))
    rows = torch.arange(height, dtype=torch.float32)[:, None] * freq
    cols = torch.arange(width, dtype=torch.float32)[:, None] * freq
    row_code = torch.cat([rows.sin(), rows.cos()], 1)[:, None].expand(height, width, 2 * quarter)
    col_code = torch.cat([cols.sin(), cols.cos()], 1)[None].expand(height, width, 2 * quarter)
    code = torch.cat([row_code, col_code], 2).reshape(height * width, 4 * quarter)
    return F.pad(code, (0, dim - 4 * quarter))


@INDEX_MODELS.register("transformer")
class MaskedIndexTransformer(nn.Module):
    """Masked-token transformer over an index grid (BERT / MaskGIT style, Chang et al. 2022).

    ``tokens``: int64 ``[B, h, w]`` in ``[0, K]`` (``K`` = [MASK]) -> ``logits``: ``[B, h, w, K]``.
    Embedding + fixed 2-D sinusoidal positions + a depthwise 3x3 convolution (local context,
    works at any grid size) -> ``depth`` pre-norm transformer layers (full attention) -> linear.

    Args:
      n_embed: codebook size ``K``.
      dim, depth, heads: transformer width, layers, attention heads.
      groups: coding groups ``G`` (see :func:`group_map`).
    """

    def __init__(self, n_embed: int, dim: int = 128, depth: int = 2, heads: int = 4, groups: int = 8):
        super().__init__()
        if groups not in (1, 2, 4, 8, 16):
            raise ValueError(f"groups must be one of 1, 2, 4, 8, 16, got {groups}")
        self.n_embed, self.dim, self.groups = int(n_embed), int(dim), int(groups)
        self.mask_token = self.n_embed
        self.token_embedding = nn.Embedding(self.n_embed + 1, dim)
        self.local = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.n_embed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, h, w = tokens.shape
        e = self.token_embedding(tokens).permute(0, 3, 1, 2)
        e = e + self.local(e)
        seq = e.flatten(2).transpose(1, 2) + _sinusoid_2d(h, w, self.dim).to(e)
        return self.head(self.norm(self.blocks(seq))).reshape(b, h, w, self.n_embed)

    def loss(self, indices: torch.Tensor, random_fraction: float = 0.5) -> torch.Tensor:
        """Cross-entropy (nats per predicted index) for a batch of grids ``[B, h, w]``.

        Each grid gets either the coding mask (a random group ``g``: groups ``>= g`` masked,
        loss on group ``g``, the exact coding objective) or, with probability
        ``random_fraction``, a random mask of a ratio drawn from U(0.02, 0.4) (loss on the
        masked positions: the lost-index recovery objective).
        """
        b, h, w = indices.shape
        groups = group_map(h, w, self.groups).to(indices.device)
        g = torch.randint(0, self.groups, (b, 1, 1), device=indices.device)
        coding_masked, coding_target = groups[None] >= g, groups[None] == g
        ratio = torch.empty(b, 1, 1, device=indices.device).uniform_(0.02, 0.4)
        random_masked = torch.rand(b, h, w, device=indices.device) < ratio
        use_random = (torch.rand(b, 1, 1, device=indices.device) < random_fraction)
        masked = torch.where(use_random, random_masked, coding_masked)
        target = torch.where(use_random, random_masked, coding_target)
        logits = self(indices.masked_fill(masked, self.mask_token))
        return F.cross_entropy(logits[target], indices[target]) if target.any() else logits.sum() * 0

    @torch.no_grad()
    def group_freqs(self, tokens: torch.Tensor, positions: torch.Tensor) -> np.ndarray:
        """Integer frequency rows ``[n, K]`` of the positions ``positions`` (bool ``[h, w]``)
        predicted from ``tokens`` ``[h, w]`` (masked where not yet decoded)."""
        probs = torch.softmax(self(tokens[None])[0][positions].float(), dim=-1)
        return ((probs * _PRIOR_SCALE).floor().to(torch.int32) + 1).numpy()

    def encode(self, indices: torch.Tensor, encoder) -> None:
        """Append ``indices`` ``[h, w]`` group by group, each under the rows predicted from the
        groups before it."""
        groups = group_map(*indices.shape, self.groups)
        tokens = torch.full_like(indices, self.mask_token)
        for g in range(self.groups):
            positions = groups == g
            if positions.any():
                encoder.encode_categorical(indices[positions].to(torch.int32).numpy(), self.group_freqs(tokens, positions))
                tokens[positions] = indices[positions]

    def decode(self, decoder, shape: tuple[int, int]) -> torch.Tensor:
        groups = group_map(*shape, self.groups)
        tokens = torch.full(shape, self.mask_token, dtype=torch.int64)
        for g in range(self.groups):
            positions = groups == g
            if positions.any():
                symbols = decoder.decode_categorical(self.group_freqs(tokens, positions))
                tokens[positions] = torch.from_numpy(symbols.astype(np.int64))
        return tokens

    @torch.no_grad()
    def recover(self, indices: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        """Fill lost indices: ``indices`` ``[h, w]``, ``lost`` bool ``[h, w]`` -> ``[h, w]``, the
        most probable index at every lost position given all received ones (one pass)."""
        tokens = indices.masked_fill(lost, self.mask_token)
        predicted = self(tokens[None])[0].argmax(-1)
        return torch.where(lost, predicted, indices)
