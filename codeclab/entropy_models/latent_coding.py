"""Coding latents through compressai's entropy models with any registered coder.

compressai's ``EntropyBottleneck`` and ``GaussianConditional`` provide the probability models,
the training-time likelihoods and the integer CDF tables; the functions here turn a latent
tensor into symbols, table indexes and back, and hand them to a stream coder
(:mod:`codeclab.entropy_models.coders`). Encoder and decoder call the *same* functions for
every continuous-to-integer step, which is what makes decoding reproduce the encoder's
quantised latents bit for bit on the same hardware.

What is exact: the symbols, and therefore ``y_hat`` given identical ``means``. What is not:
``scales`` and ``means`` come out of a network; if the decoder's network computes them with
different floating point (another CPU/GPU), a scale near a table boundary may map to another
table index and decoding diverges. The model file fixes the tables, not the network's arithmetic.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from .coders import CdfTables, StreamDecoder, StreamEncoder


def scale_to_table_index(gaussian: GaussianConditional, scales: torch.Tensor) -> torch.Tensor:
    """Index of the CDF table used for each predicted scale (int32, same shape as ``scales``).

    ``index = #{k < K-1 : scale_table[k] < max(scale, lower_bound)}``: the smallest table scale
    that is >= the predicted scale (the widest table when none is), as compressai defines it.
    Both encoder and decoder call this, so equal scales always give equal tables.
    """
    return gaussian.build_indexes(scales).int()


def quantize_symbols(y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Integer symbols ``round(y - means)`` (round half to even, as torch.round)."""
    return torch.round(y - means).int()


def dequantize_symbols(symbols: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """The quantised latent ``y_hat = symbols + means`` that both sides reconstruct."""
    return symbols.to(means.dtype) + means


def _channel_indexes(shape: torch.Size) -> torch.Tensor:
    channels = torch.arange(shape[1], dtype=torch.int32).view(1, -1, *([1] * (len(shape) - 2)))
    return channels.expand(shape).contiguous()


def _bottleneck_medians(bottleneck: EntropyBottleneck, shape: torch.Size) -> torch.Tensor:
    medians = bottleneck.quantiles[:, 0, 1].detach()
    return medians.view(1, -1, *([1] * (len(shape) - 2))).expand(shape)


def quantize_factorized(bottleneck: EntropyBottleneck, z: torch.Tensor) -> torch.Tensor:
    """The ``z_hat`` that :func:`encode_factorized` codes and returns, without coding it."""
    medians = _bottleneck_medians(bottleneck, z.shape)
    return dequantize_symbols(quantize_symbols(z, medians), medians)


def encode_factorized(bottleneck: EntropyBottleneck, z: torch.Tensor, encoder: StreamEncoder) -> torch.Tensor:
    """Code ``z`` ``[B, C, ...]`` with one table per channel; returns ``z_hat``."""
    medians = _bottleneck_medians(bottleneck, z.shape)
    symbols = quantize_symbols(z, medians)
    encoder.encode(symbols.numpy(), _channel_indexes(z.shape).numpy(), CdfTables.from_entropy_model(bottleneck))
    return dequantize_symbols(symbols, medians)


def decode_factorized(bottleneck: EntropyBottleneck, decoder: StreamDecoder, shape: tuple[int, ...]) -> torch.Tensor:
    """Decode a ``[B, C, ...]`` latent coded by :func:`encode_factorized`."""
    shape = torch.Size(shape)
    symbols = decoder.decode(_channel_indexes(shape).numpy(), CdfTables.from_entropy_model(bottleneck))
    return dequantize_symbols(torch.from_numpy(symbols).view(shape), _bottleneck_medians(bottleneck, shape))


def encode_gaussian(
    gaussian: GaussianConditional, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None, encoder: StreamEncoder
) -> torch.Tensor:
    """Code ``y`` under N(means, scales) convolved with U(-1/2, 1/2); returns ``y_hat``."""
    means = torch.zeros_like(y) if means is None else means
    symbols = quantize_symbols(y, means)
    encoder.encode(symbols.numpy(), scale_to_table_index(gaussian, scales).numpy(), CdfTables.from_entropy_model(gaussian))
    return dequantize_symbols(symbols, means)


def decode_gaussian(
    gaussian: GaussianConditional, decoder: StreamDecoder, scales: torch.Tensor, means: torch.Tensor | None
) -> torch.Tensor:
    """Decode a latent coded by :func:`encode_gaussian` with the same ``scales`` and ``means``."""
    means = torch.zeros_like(scales) if means is None else means
    symbols = decoder.decode(scale_to_table_index(gaussian, scales).numpy(), CdfTables.from_entropy_model(gaussian))
    return dequantize_symbols(torch.from_numpy(symbols).view(scales.shape), means)
