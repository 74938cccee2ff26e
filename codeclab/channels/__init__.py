"""Simulated communication channels for joint source-channel coding (:mod:`codeclab.jscc`).

As SwinJSCC's official ``channel.py`` (semcomm/SwinJSCC, after KeYang8/WITT), pinned in
``tests/channels/test_channels.py``:

* **Complex symbols.** A real tensor is flattened (the whole batch) and its first half is the
  real part, its second half the imaginary part of the complex channel symbols.
* **Power.** ``P = 2 * sum(x^2) / n`` over the ``n`` real values sent (the whole batch; the
  selected channels only where a mask drops some), ``x / sqrt(P)``: unit average power per
  complex symbol. The receiver multiplies by ``sqrt(P)`` again (it knows the power).
* **AWGN.** ``y = x + n``, complex noise of variance ``10^(-SNR/10)`` (``sigma^2 = 1 / (2 * 10^(SNR/10))``
  per real part), so SNR is Es/N0 per complex symbol. Gradients pass as the identity.
* **Rayleigh.** ``y = |h| x + n``, ``|h| = sqrt(a^2 + b^2) / sqrt(2)``, ``a, b ~ N(0, 1)``
  i.i.d. per symbol (fast fading, ``E|h|^2 = 1``), perfect phase compensation, no equalisation
  of the amplitude: the decoder learns to cope.
* **CBR** (channel bandwidth ratio) = complex symbols / source dimensions (``3 H W``).

Capacities for the separation baseline: AWGN ``log2(1 + SNR)`` bits per complex symbol; Rayleigh
fast fading the ergodic ``E[log2(1 + |h|^2 SNR)]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..registry import Registry

CHANNELS = Registry("channel")


def noise_sigma(snr_db: float) -> float:
    """Standard deviation of each real part of the complex noise at ``snr_db`` (unit symbol power)."""
    return math.sqrt(1.0 / (2 * 10 ** (snr_db / 10)))


def power_normalise(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / sqrt(P), P)``: unit average power per complex symbol over the values sent (``mask``)."""
    sent = x.numel() if mask is None else mask.expand_as(x).sum()
    power = 2 * (x**2).sum() / sent
    return x / torch.sqrt(power), power


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1)
    half = flat.numel() // 2
    return torch.complex(flat[:half], flat[half:])


def _as_real(symbols: torch.Tensor, shape) -> torch.Tensor:
    return torch.cat([symbols.real, symbols.imag]).reshape(shape)


class Channel(nn.Module):
    """A channel on real tensors with an even number of values: power-normalise, send, de-normalise."""

    def forward(self, x: torch.Tensor, snr_db: float, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.numel() % 2:
            raise ValueError("a channel input needs an even number of real values (complex pairs)")
        sent, power = power_normalise(x, mask)
        received = _as_real(self.transmit(_as_complex(sent), snr_db), sent.shape)
        received = self.gradient(sent, received) * torch.sqrt(power)
        return received if mask is None else received * mask

    def gradient(self, sent: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
        return received

    def transmit(self, symbols: torch.Tensor, snr_db: float) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _noise(symbols: torch.Tensor, snr_db: float) -> torch.Tensor:
        sigma = noise_sigma(snr_db)
        real = torch.randn(symbols.shape, device=symbols.device) * sigma
        imag = torch.randn(symbols.shape, device=symbols.device) * sigma
        return torch.complex(real, imag)


@CHANNELS.register("awgn")
class AWGN(Channel):
    """Additive white Gaussian noise; the gradient passes as the identity (the noise is detached)."""

    def transmit(self, symbols: torch.Tensor, snr_db: float) -> torch.Tensor:
        return symbols + self._noise(symbols, snr_db)

    def gradient(self, sent: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
        return sent + (received - sent).detach()

    @staticmethod
    def capacity(snr_db: float) -> float:
        """Bits per complex symbol."""
        return math.log2(1 + 10 ** (snr_db / 10))


@CHANNELS.register("rayleigh")
class Rayleigh(Channel):
    """Rayleigh fast fading (amplitude per symbol) plus AWGN; gradients flow through ``|h| x``."""

    def transmit(self, symbols: torch.Tensor, snr_db: float) -> torch.Tensor:
        a = torch.randn(symbols.shape, device=symbols.device)
        b = torch.randn(symbols.shape, device=symbols.device)
        amplitude = torch.sqrt(a**2 + b**2) / math.sqrt(2)
        return symbols * amplitude + self._noise(symbols, snr_db)

    @staticmethod
    def capacity(snr_db: float, draws: int = 1_000_000) -> float:
        """Ergodic bits per complex symbol, ``E[log2(1 + |h|^2 SNR)]`` (|h|^2 ~ Exp(1), Monte Carlo, fixed seed)."""
        gains = np.random.default_rng(0).exponential(size=draws)
        return float(np.mean(np.log2(1 + gains * 10 ** (snr_db / 10))))


def channel_bandwidth_ratio(real_values: int, height: int, width: int) -> float:
    """Complex channel symbols per source dimension (``3 H W``)."""
    return real_values / 2 / (3 * height * width)
