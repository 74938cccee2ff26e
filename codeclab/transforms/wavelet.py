"""Invertible 2D wavelet packet transform in torch (periodized, critically sampled).

The filters come from PyWavelets (``pywt.Wavelet(name).filter_bank``); the filtering runs in
torch so that it batches, runs on any device and is differentiable. Neither ``ptwt`` nor
``pytorch_wavelets`` offers the critically sampled "periodization" mode with full packet trees,
which WaLLoC needs (every level splits every subband, so there are as many coefficients as pixels).

Math (one axis, signal ``x`` of even length ``N``, analysis filters ``h0, h1`` of even length
``F``, indexes modulo ``N``)::

    a[k] = sum_j h0[j] x[2k + F/2 - j]          d[k] = sum_j h1[j] x[2k + F/2 - j]

which is PyWavelets' ``mode="periodization"`` (tests compare with ``pywt.dwt2`` and
``pywt.WaveletPacket2D``). A ``J``-level packet splits every band again, giving ``S = 2**J``
bands of ``N / S`` coefficients. That whole operator commutes with shifts by ``S``, so it is one
strided convolution: band ``i`` is ``c_i[k] = sum_m u_i[m] x[S k + m]`` with a kernel ``u_i``
of about ``(F - 1)(S - 1) + 1`` taps. The kernels are computed once, in float64, by applying the
level-by-level definition to impulses; the synthesis kernels are the columns of the inverse of
that operator (for biorthogonal wavelets: the synthesis filter bank). One convolution per axis
instead of ``J`` levels of small ones makes the forward transform several times faster on CPU.

2D: the axis transform runs along the width, then the height (a full packet tree is separable).
Per level, every channel becomes four consecutive channels in ``pywt.dwt2`` order
(approximation, horizontal, vertical, diagonal detail), nested level by level, so
``[B, C, H, W] -> [B, C * 4**J, H / 2**J, W / 2**J]``. The inverse is exact up to float
rounding (~1e-6 in float32 for CDF 9/7, ``bior4.4``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import TRANSFORMS, TransformPair
from .kl_decoder import AutoencoderKLDecoder


def _split_periodized(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """One periodized analysis level along the last axis: ``[..., N] -> [..., 2, N/2]``."""
    n, taps = x.shape[-1], len(lo)
    # rows[k, j] = x[2k + F/2 - j]
    index = (2 * np.arange(n // 2)[:, None] + taps // 2 - np.arange(taps)[None, :]) % n
    windows = x[..., index]
    return np.stack([windows @ lo, windows @ hi], axis=-2)


MAX_PACKET_WORK = 1 << 25


def _packet_kernels(wavelet: str, levels: int) -> tuple[np.ndarray, int, np.ndarray, int]:
    """Analysis and synthesis kernels ``[S, L]`` of the 1D ``J``-level packet and their left offsets."""
    import pywt  # only WaLLoC's transforms need it: kept off the other codecs' start-up

    dec_lo, dec_hi = (np.asarray(f, dtype=np.float64) for f in pywt.Wavelet(wavelet).filter_bank[:2])
    if len(dec_lo) % 2:
        raise ValueError(f"wavelet {wavelet!r} has an odd filter length")
    bands = 2**levels
    n = 4 * len(dec_lo) * bands  # long enough that no kernel wraps around
    # The construction holds n * n * taps / 2 floats and inverts an n x n matrix: bound it before
    # allocating (a model file's config chooses the wavelet and levels; bior4.4 at 5 levels: 2^24).
    if n * n * len(dec_lo) > MAX_PACKET_WORK:
        raise ValueError(f"wavelet {wavelet!r} at {levels} levels is too long a packet transform")
    coeffs = np.eye(n)[:, None, :]  # impulses: [N, 1, N]
    for _ in range(levels):
        coeffs = _split_periodized(coeffs, dec_lo, dec_hi).reshape(n, coeffs.shape[1] * 2, -1)
    operator = coeffs.reshape(n, n).T  # row (band i, position k) <- column (sample m)
    inverse = np.linalg.inv(operator)
    # Band i at position 0 reads samples m (analysis) and writes samples m (synthesis).
    analysis = operator.reshape(bands, n // bands, n)[:, 0, :]
    synthesis = inverse.reshape(n, bands, n // bands)[:, :, 0].T
    return (*_centred(analysis), *_centred(synthesis))


def _centred(kernels: np.ndarray) -> tuple[np.ndarray, int]:
    """Periodic kernels ``[S, N]`` cut to their support ``[-left, right]``; returns ``(taps, left)``."""
    n = kernels.shape[1]
    support = np.flatnonzero(np.abs(kernels).max(0) > 1e-14)
    signed = np.where(support > n // 2, support - n, support)
    left, right = -signed.min(), signed.max()
    return kernels[:, np.arange(-left, right + 1) % n], int(left)


def _circular_gather(x: torch.Tensor, left: int, length: int) -> torch.Tensor:
    """``x`` ``[N, C, L]`` read periodically along its last axis from index ``-left`` for ``length`` entries."""
    right = length - left - x.shape[-1]
    if 0 <= left <= x.shape[-1] and 0 <= right <= x.shape[-1]:
        return F.pad(x, (left, right), mode="circular")  # much faster than a gather
    # Signals shorter than the kernel wrap around more than once.
    index = (torch.arange(length, device=x.device) - left) % x.shape[-1]
    return x.index_select(-1, index)


class WaveletPacket2d(nn.Module):
    """``J``-level 2D wavelet packet transform and its inverse.

    Args:
        wavelet: a PyWavelets wavelet name with an even filter length (default CDF 9/7, ``bior4.4``).
        levels: ``J``; inputs need H and W divisible by ``2**J``.

    Shapes: :meth:`forward` ``[B, C, H, W] -> [B, C * 4**J, H / 2**J, W / 2**J]``;
    :meth:`inverse` the reverse. Channel ``c * 4**J + i`` holds packet ``i`` of input channel ``c``.
    """

    def __init__(self, wavelet: str = "bior4.4", levels: int = 3):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.wavelet, self.levels, self.bands = wavelet, levels, 2**levels
        analysis, self._analysis_left, synthesis, self._synthesis_left = _packet_kernels(wavelet, levels)
        # Derived from the wavelet name, so not part of the state_dict.
        self.register_buffer("analysis", torch.tensor(analysis, dtype=torch.float32)[:, None, :], persistent=False)
        self.register_buffer("synthesis", torch.tensor(synthesis, dtype=torch.float32)[:, None, :], persistent=False)

    def _analysis_1d(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., N] -> [..., S, N / S]`` along the last axis."""
        *lead, n = x.shape
        padded = _circular_gather(x.reshape(-1, 1, n), self._analysis_left, n - self.bands + self.analysis.shape[-1])
        return F.conv1d(padded, self.analysis.to(x.dtype), stride=self.bands).reshape(*lead, self.bands, n // self.bands)

    def _synthesis_1d(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``[..., S, K] -> [..., S * K]``: overlap-add of the synthesis kernels, wrapped periodically."""
        *lead, bands, k = coeffs.shape
        n = bands * k
        out = F.conv_transpose1d(coeffs.reshape(-1, bands, k), self.synthesis.to(coeffs.dtype), stride=bands)
        out = F.pad(out, (0, -out.shape[-1] % n)).reshape(out.shape[0], -1, n).sum(1)
        return out.roll(-self._synthesis_left, dims=-1).reshape(*lead, n)

    def _bit_axes(self, first: int) -> list[int]:
        return list(range(first, first + self.levels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        if height % self.bands or width % self.bands:
            raise ValueError(f"input size {(height, width)} is not a multiple of {self.bands}")
        coeffs = self._analysis_1d(x)  # [B, C, H, S_w, W']
        coeffs = self._analysis_1d(coeffs.permute(0, 1, 3, 4, 2))  # [B, C, S_w, W', S_h, H']
        two = [2] * self.levels
        coeffs = coeffs.reshape(batch, channels, *two, width // self.bands, *two, height // self.bands)
        # Interleave the band bits level by level: (w1, h1, w2, h2, ...), then H', W'.
        w_bits, h_bits = self._bit_axes(2), self._bit_axes(3 + self.levels)
        order = [0, 1, *[a for pair in zip(w_bits, h_bits) for a in pair], 3 + 2 * self.levels, 2 + self.levels]
        return coeffs.permute(order).reshape(batch, channels * self.bands**2, height // self.bands, width // self.bands)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        batch, packets, h, w = coeffs.shape
        channels = packets // self.bands**2
        coeffs = coeffs.reshape(batch, channels, *[2] * (2 * self.levels), h, w)
        bits = list(range(2, 2 + 2 * self.levels))
        order = [0, 1, *bits[0::2], 3 + 2 * self.levels, *bits[1::2], 2 + 2 * self.levels]
        coeffs = coeffs.permute(order).reshape(batch, channels, self.bands, w, self.bands, h)
        rows = self._synthesis_1d(coeffs)  # [B, C, S_w, W', H]
        return self._synthesis_1d(rows.permute(0, 1, 4, 2, 3))  # [B, C, H, W]


class _ResidualMLP(nn.Module):
    """``y + W2 GELU(W1 y)`` with 1x1 convolutions: the optional light nonlinear encoder stage."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, y):
        return y + self.net(y)


class WaLLoCAnalysis(nn.Module):
    """WaLLoC's encoder: ``E(WPT_J(x - 1/2))``, ``[B, 3, H, W] -> [B, M, H / 2**J, W / 2**J]``;
    ``E`` is a 1x1 projection of the ``3 * 4**J`` packets (+ an optional residual 1x1 MLP)."""

    def __init__(self, wpt: WaveletPacket2d, latent_channels: int, encoder_hidden: int = 0):
        super().__init__()
        self.wpt = wpt
        projection = nn.Conv2d(3 * wpt.bands**2, latent_channels, 1)
        self.encoder = nn.Sequential(projection, _ResidualMLP(latent_channels, encoder_hidden)) if encoder_hidden else projection

    def forward(self, x):
        return self.encoder(self.wpt(x - 0.5))


class WaLLoCSynthesis(nn.Module):
    """WaLLoC's decoder as the official code: ``WPT_J^-1(D(y_hat)) + 1/2``, ``D`` diffusers'
    AutoencoderKL decoder with one block of width ``channels`` (:mod:`.kl_decoder`:
    GroupNorm(``groups``), SiLU, a mid-block attention, no upsampling). CodecLab's first decoder,
    which model files before format 4 use, is :class:`codeclab.compat.transforms.WaLLoCSynthesisV1`."""

    def __init__(self, wpt: WaveletPacket2d, latent_channels: int, channels: int = 768, groups: int = 32):
        super().__init__()
        self.wpt = wpt
        self.decoder = AutoencoderKLDecoder(latent_channels, 3 * wpt.bands**2, (channels,), norm_num_groups=groups)

    def forward(self, y_hat):
        return self.wpt.inverse(self.decoder(y_hat)) + 0.5


@TRANSFORMS.register("walloc")
def walloc_transforms(levels: int = 3, latent_channels: int = 12, wavelet: str = "bior4.4", encoder_hidden: int = 0,
                      decoder_channels: int = 768, decoder_groups: int = 32) -> TransformPair:
    """WaLLoC's transforms (Jacobellis & Yadwadkar 2024), stride ``2**levels``; ``decoder_channels``,
    ``decoder_groups``: see :class:`WaLLoCSynthesis`."""
    wpt = WaveletPacket2d(wavelet, levels)
    return TransformPair(WaLLoCAnalysis(wpt, latent_channels, encoder_hidden),
                         WaLLoCSynthesis(wpt, latent_channels, decoder_channels, decoder_groups), 2**levels)
