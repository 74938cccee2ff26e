"""Discretized Gaussian mixture likelihoods (Cheng, Sun, Takeuchi & Katto, "Learned Image
Compression with Discretized Gaussian Mixture Likelihoods and Attention Modules", CVPR 2020).

Each element of ``y`` gets ``K`` (paper: 3) weights, means and scales from the entropy-parameter
network, ``3 K`` channels per latent channel, ordered as Cheng et al.'s TensorFlow code
(``tf.split(params, 9)`` into ``prob0, mean0, scale0, prob1, ...``): chunk ``3 k + {0, 1, 2}`` of
``M`` channels holds component ``k``'s weight logit, mean and scale (CodecLab's first order, of
model files before format 5: :class:`codeclab.compat.entropy_models.GaussianMixtureConditionalV1`)::

    p(y_hat) = sum_k softmax(w)_k [Phi((y_hat + 1/2 - mu_k) / sigma_k) - Phi((y_hat - 1/2 - mu_k) / sigma_k)]

``y_hat = round(y)`` (no mean offset: the mixture has no single mean). Coding, per group of
elements: the integer frequencies ``floor(p(v) * 2^16) + 1`` of the ``2 R + 1`` values
``v`` in a window around the rounded mixture mean (``R`` covers every component to 8 standard
deviations, at most :data:`MAX_RADIUS`) plus an escape entry, coded with the coder's
categorical mode; a value outside its window is coded as the escape and then exactly through
the table mode (a one-entry table whose escape codes any int32). Exact on the configuration
that encoded (the frequencies come from float arithmetic; the model is not portable).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..coding.coders import CdfTables
from .gaussian import _standardized_cumulative

SCALE_BOUND = 0.11
MAX_RADIUS = 64
FREQUENCY_BITS = 16
# One table with a single value and the escape: every int32 is coded exactly through the escape.
_RAW_VALUES = CdfTables(np.array([[0, 1, 2**16]], dtype=np.int32), np.array([3], dtype=np.int32),
                        np.array([0], dtype=np.int32))


class GaussianMixtureConditional(nn.Module):
    """The discretized Gaussian mixture of ``components`` components (see the module docstring)."""

    likelihood_bound = 1e-6  # the official code's lower bound in training (tf.maximum(..., 1e-6))

    def __init__(self, components: int = 3):
        super().__init__()
        if components < 1:
            raise ValueError(f"need at least one mixture component, got {components}")
        self.components = int(components)
        # (edge_min, edge_max): the official robust tails, the whole mass below edge_min + 1/2
        # and above edge_max - 1/2 at the clip's ends; None: every value an interval of width 1.
        self.edges: tuple[float, float] | None = None

    def split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, 3 K M, ...]`` -> weights (softmax over ``K``), means, scales (bounded), each ``[B, K, M, ...]``."""
        logits, means, scales = params.reshape(params.shape[0], self.components, 3, -1, *params.shape[2:]).unbind(2)
        return self.bounded(logits, means, scales)

    @staticmethod
    def bounded(logits: Tensor, means: Tensor, scales: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Softmax weights over ``K`` (dim 1), the means, the scales bounded below."""
        weights = torch.softmax(logits, dim=1)
        return weights, means, scales.abs().clamp_min(SCALE_BOUND)

    def likelihood(self, values: Tensor, params: Tensor) -> Tensor:
        """``p(values)`` ``[B, M, ...]`` under the mixture of ``params`` (lower-bounded)."""
        weights, means, scales = self.split(params)
        values = values.unsqueeze(1)
        upper = _standardized_cumulative((values + 0.5 - means) / scales)
        lower = _standardized_cumulative((values - 0.5 - means) / scales)
        if self.edges is not None:  # tf.where(y <= edge_min, upper, ...), tf.where(y >= edge_max, 1 - lower, ...)
            upper = torch.where(values >= self.edges[1], torch.ones_like(upper), upper)
            lower = torch.where(values <= self.edges[0], torch.zeros_like(lower), lower)
        return (weights * (upper - lower)).sum(1).clamp_min(self.likelihood_bound)

    def _windows(self, params: Tensor) -> tuple[Tensor, int, np.ndarray]:
        """``(first value of each element's window [n], radius R, frequency rows [n, 2R + 2])`` of
        ``params`` ``[B, 3 K M, ...]`` (elements in ``[B, M, ...]`` order)."""
        weights, means, scales = self.split(params)
        flat = [t.transpose(0, 1).reshape(self.components, -1) for t in (weights, means, scales)]
        weights, means, scales = flat
        centre = torch.round((weights * means).sum(0))
        reach = ((means - centre).abs() + 8 * scales).max().item()
        radius = int(min(MAX_RADIUS, max(1, int(np.ceil(reach)))))
        values = centre[:, None] + torch.arange(-radius, radius + 1, dtype=centre.dtype)[None, :]
        upper = _standardized_cumulative((values[None] + 0.5 - means[:, :, None]) / scales[:, :, None])
        lower = _standardized_cumulative((values[None] - 0.5 - means[:, :, None]) / scales[:, :, None])
        pmf = (weights[:, :, None] * (upper - lower)).sum(0)
        freqs = np.ones((pmf.shape[0], 2 * radius + 2), dtype=np.int64)  # the last one: escape
        freqs[:, :-1] += np.floor(pmf.double().numpy() * 2**FREQUENCY_BITS).astype(np.int64)
        return centre - radius, radius, freqs

    def encode(self, y: Tensor, params: Tensor, encoder) -> Tensor:
        """Code ``round(y)`` ``[B, M, ...]``; returns it."""
        y_hat = torch.round(y)
        first, radius, freqs = self._windows(params)
        values = y_hat.transpose(0, 1).reshape(-1)
        index = (values - first).long()
        escaped = (index < 0) | (index > 2 * radius)
        index[escaped] = 2 * radius + 1
        encoder.encode_categorical(index.numpy().astype(np.int32), freqs)
        if escaped.any():
            raw = values[escaped].long().numpy().astype(np.int32)
            encoder.encode(raw, np.zeros(raw.shape, dtype=np.int32), _RAW_VALUES)
        return y_hat

    def decode(self, params: Tensor, decoder, shape: tuple[int, ...]) -> Tensor:
        """The ``round(y)`` :meth:`encode` coded, ``shape`` ``[B, M, ...]``."""
        first, radius, freqs = self._windows(params)
        index = torch.from_numpy(decoder.decode_categorical(freqs).astype(np.int64))
        values = first + index.to(first.dtype)
        escaped = index == 2 * radius + 1
        if escaped.any():
            raw = decoder.decode(np.zeros(int(escaped.sum()), dtype=np.int32), _RAW_VALUES)
            values[escaped] = torch.from_numpy(raw.astype(np.int64)).to(values.dtype)
        batch_first = (shape[1], shape[0], *shape[2:])
        return values.reshape(batch_first).transpose(0, 1).contiguous()
