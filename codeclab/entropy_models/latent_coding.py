"""Latent tensors <-> integer symbols and table indexes, handed to any stream coder.

Encoder and decoder call the *same* functions for every continuous-to-integer step, which is
what makes decoding reproduce the encoder's quantised latents bit for bit on the same hardware.

What is exact: the symbols, and therefore ``y_hat`` given identical ``scales`` and ``means``.
Those come out of a network: integer networks (:mod:`.integer`) compute them identically on every
machine; with float ones a scale near a table boundary may map to another table index on another
CPU/GPU and decoding diverges (the decoder's end-of-stream check then reports a corrupt stream).

The coder runs on the CPU: symbols and table indexes go to host memory before coding, and decoded
symbols join ``means`` on its device, so a model on a GPU codes real bytes too.
"""

from __future__ import annotations

import torch
from torch import Tensor


def quantize_symbols(y: Tensor, means: Tensor) -> Tensor:
    """Integer symbols ``round(y - means)`` (round half to even, as torch.round)."""
    return torch.round(y - means).int()


def dequantize_symbols(symbols: Tensor, means: Tensor) -> Tensor:
    """The quantised latent ``y_hat = symbols + means`` that both sides reconstruct."""
    return symbols.to(device=means.device, dtype=means.dtype) + means


def _channel_indexes(shape: torch.Size) -> Tensor:
    channels = torch.arange(shape[1], dtype=torch.int32).view(1, -1, *([1] * (len(shape) - 2)))
    return channels.expand(shape).contiguous()


def _medians(bottleneck, shape: torch.Size) -> Tensor:
    return bottleneck.broadcast_medians(len(shape)).detach().expand(shape)


def quantize_factorized(bottleneck, z: Tensor) -> Tensor:
    """The ``z_hat`` that :func:`encode_factorized` codes and returns, without coding it."""
    medians = _medians(bottleneck, z.shape)
    return dequantize_symbols(quantize_symbols(z, medians), medians)


def encode_factorized(bottleneck, z: Tensor, encoder) -> Tensor:
    """Code ``z`` ``[B, C, ...]`` with one table per channel of an ``EntropyBottleneck``; returns ``z_hat``."""
    medians = _medians(bottleneck, z.shape)
    symbols = quantize_symbols(z, medians)
    encoder.encode(symbols.cpu().numpy(), _channel_indexes(z.shape).numpy(), bottleneck.tables())
    return dequantize_symbols(symbols, medians)


def decode_factorized(bottleneck, decoder, shape: tuple[int, ...]) -> Tensor:
    """Decode a ``[B, C, ...]`` latent coded by :func:`encode_factorized`."""
    shape = torch.Size(shape)
    symbols = decoder.decode(_channel_indexes(shape).numpy(), bottleneck.tables())
    return dequantize_symbols(torch.from_numpy(symbols).view(shape), _medians(bottleneck, shape))


def encode_gaussian(gaussian, y: Tensor, scales: Tensor, means: Tensor | None, encoder) -> Tensor:
    """Code ``y`` under N(means, scales) convolved with U(-1/2, 1/2); returns ``y_hat``
    (``round(y - c) + c`` with ``c = gaussian.coding_means(means)``)."""
    means = torch.zeros_like(y) if means is None else means
    centres = gaussian.coding_means(means)
    symbols = quantize_symbols(y, centres)
    encoder.encode(symbols.cpu().numpy(), gaussian.table_indexes(scales, means).cpu().numpy(), gaussian.tables())
    return dequantize_symbols(symbols, centres)


def decode_gaussian(gaussian, decoder, scales: Tensor, means: Tensor | None) -> Tensor:
    """Decode a latent coded by :func:`encode_gaussian` with the same ``scales`` and ``means``."""
    means = torch.zeros_like(scales) if means is None else means
    symbols = decoder.decode(gaussian.table_indexes(scales, means).cpu().numpy(), gaussian.tables())
    return dequantize_symbols(torch.from_numpy(symbols).view(scales.shape), gaussian.coding_means(means))
