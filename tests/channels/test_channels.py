"""The simulated channels as SwinJSCC's official channel.py: complex pairing of the two halves,
power normalisation over what is sent, noise from the SNR in dB, Rayleigh fast fading, the CBR
and the capacities the separation baseline uses."""

import math

import pytest
import torch

from codeclab.channels import AWGN, CHANNELS, Rayleigh, channel_bandwidth_ratio, noise_sigma, power_normalise


def test_noise_has_the_variance_the_snr_asks_for():
    assert noise_sigma(10) == pytest.approx(math.sqrt(1 / 20))  # sqrt(1 / (2 * 10^(SNR/10)))
    torch.manual_seed(0)
    x = torch.randn(2, 64, 128)
    y = AWGN()(x, 7.0)
    _, power = power_normalise(x)
    noise = (y - x) / torch.sqrt(power)  # back to unit symbol power
    assert (noise**2).mean().item() * 2 == pytest.approx(10 ** -0.7, rel=0.02)  # complex noise power 1/SNR


def test_power_is_normalised_per_complex_symbol_over_what_is_sent():
    x = torch.randn(3, 10, 8) * 5
    sent, power = power_normalise(x)
    assert power.item() == pytest.approx(2 * (x**2).mean().item())
    assert (sent**2).sum().item() / (sent.numel() / 2) == pytest.approx(1.0)  # unit power per complex symbol
    tokens = torch.randn(3, 4, 5, 8)
    mask = torch.zeros(3, 1, 1, 8)
    mask[..., :2] = 1  # 2 of 8 channels sent
    _, masked_power = power_normalise(tokens * mask, mask)
    assert masked_power.item() == pytest.approx(2 * ((tokens * mask) ** 2).sum().item() / (3 * 4 * 5 * 2))


def test_symbols_pair_the_first_half_with_the_second(monkeypatch):
    seen = {}

    def capture(self, symbols, snr_db):
        seen["symbols"] = symbols
        return symbols

    monkeypatch.setattr(AWGN, "transmit", capture)
    x = torch.arange(1.0, 9.0).reshape(2, 4)
    y = AWGN()(x, 10.0)
    scale = math.sqrt(2 * (x**2).mean().item())
    assert torch.allclose(seen["symbols"] * scale, torch.complex(torch.arange(1.0, 5.0), torch.arange(5.0, 9.0)))
    assert torch.allclose(y, x)  # de-normalised: the receiver knows the power


def test_awgn_passes_gradients_around_the_noise_and_masks_what_was_not_sent(monkeypatch):
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    mask = torch.ones(2, 1, 1, 6)
    mask[..., 3:] = 0
    y = AWGN()(x * mask, 0.0, mask)
    assert torch.all(y[..., 3:] == 0) and torch.any(y[..., :3] != (x * mask)[..., :3])
    # Without noise the channel is the identity, gradients included (the noise is detached).
    monkeypatch.setattr(AWGN, "_noise", staticmethod(lambda s, snr: torch.zeros_like(s)))
    AWGN()(x, 0.0).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x), atol=1e-5)


def test_rayleigh_fades_each_symbol_with_unit_mean_power(monkeypatch):
    torch.manual_seed(0)
    symbols = torch.ones(200_000, dtype=torch.complex64)
    monkeypatch.setattr(Rayleigh, "_noise", staticmethod(lambda s, snr: torch.zeros_like(s)))
    faded = Rayleigh().transmit(symbols, 10.0)
    gains = faded.real
    assert faded.imag.abs().max() == 0  # amplitude only: perfect phase compensation
    assert (gains**2).mean().item() == pytest.approx(1.0, rel=0.01) and gains.std() > 0.4  # E|h|^2 = 1, per symbol


def test_capacities_and_cbr():
    assert AWGN.capacity(10) == pytest.approx(math.log2(11))
    assert Rayleigh.capacity(10) < AWGN.capacity(10)  # Jensen: fading costs capacity
    assert Rayleigh.capacity(10) == pytest.approx(2.9, abs=0.05)
    assert channel_bandwidth_ratio(16 * 16 * 32, 256, 256) == pytest.approx(1 / 48)
    assert sorted(CHANNELS) == ["awgn", "rayleigh"]
    with pytest.raises(ValueError, match="even number"):
        AWGN()(torch.ones(3), 10.0)
