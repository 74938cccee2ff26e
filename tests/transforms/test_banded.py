"""Float64 synthesis in bands of rows (codeclab/transforms/banded.py): the same function as one
call, at most the last bit of float64 apart, whatever the band height; which transforms it bands."""

import pytest
import torch
from torch import nn

from codeclab.codecs import cheng2020_anchor, mbt2018_mean
from codeclab.transforms import banded
from codeclab.transforms.cnn import synthesis


def _compare(net: nn.Module, x: torch.Tensor, budget: int, monkeypatch) -> torch.Tensor:
    monkeypatch.setattr(banded, "BAND_BYTES", budget)
    with torch.no_grad():
        whole, parts = net(x), banded.banded_forward(net, x)
    assert parts.shape == whole.shape
    # The last bit of float64, relative to the values' scale: the same function, other sum blocking.
    assert (parts - whole).abs().max() <= 1e-14 * whole.abs().max()
    return parts


@pytest.mark.parametrize("budget", [1, 1 << 12, 1 << 16, 1 << 40])  # one row per band .. one band per layer
def test_the_hyperprior_synthesis_in_bands_equals_one_call(budget, monkeypatch):
    torch.manual_seed(0)
    g_s = synthesis(16, 24).double()
    y_hat = torch.randn(1, 24, 7, 9, dtype=torch.float64).round()  # odd latent sizes
    assert banded.bandable(g_s)
    before = y_hat.clone()
    _compare(g_s, y_hat, budget, monkeypatch)
    assert torch.equal(y_hat, before)  # pointwise layers work in place, never on the caller's latent


@pytest.mark.parametrize("budget", [1, 1 << 10, 1 << 40])
def test_strided_dilated_and_asymmetric_convolutions_in_bands_equal_one_call(budget, monkeypatch):
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(),
        nn.Conv2d(8, 8, 5, stride=2, padding=2), nn.ReLU(),
        nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1),
        nn.ConvTranspose2d(6, 4, 4, stride=3, padding=2),
        nn.Conv2d(4, 3, (3, 5), padding=(2, 1), dilation=(2, 1)),
    ).double()
    _compare(net, torch.randn(1, 3, 37, 41, dtype=torch.float64), budget, monkeypatch)


def test_bands_bound_the_unfolded_buffer(monkeypatch):
    """With a budget of one input row's unfolding per band, a 5x5 stride-2 transposed convolution
    of 20 input rows runs as 20 parts, each on its few reaching rows."""
    layer = nn.ConvTranspose2d(4, 4, 5, stride=2, padding=2, output_padding=1).double()
    x = torch.randn(1, 4, 20, 6, dtype=torch.float64)
    monkeypatch.setattr(banded, "BAND_BYTES", 4 * 25 * 6 * 8)
    heights = []
    original = banded.F.conv_transpose2d
    monkeypatch.setattr(banded.F, "conv_transpose2d", lambda part, *a, **k: heights.append(part.shape[2]) or original(part, *a, **k))
    out = banded.banded_forward(nn.Sequential(layer), x)
    assert out.shape == (1, 4, 40, 12) and len(heights) == 20 and max(heights) <= 4


def test_transforms_that_are_not_sequential_convolutions_run_in_one_call():
    assert banded.bandable(mbt2018_mean(N=8, M=12).g_s)
    assert not banded.bandable(cheng2020_anchor(N=8).g_s)  # residual blocks, pixel shuffles
    assert not banded.bandable(nn.Sequential(nn.Conv2d(3, 3, 3, padding="same")))
    assert not banded.bandable(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")))
    assert not banded.bandable(nn.Sequential(nn.ConvTranspose2d(3, 3, 1, stride=2)))  # rows no input reaches
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding="same"), nn.Sigmoid()).double()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(banded.banded_forward(net, x), net(x))


def test_only_pointwise_bands_give_one_calls_values_bit_for_bit(monkeypatch):
    """The encoders' analysis (``convolutions=False``): GDN band by band, in place; float32."""
    from codeclab.transforms.cnn import analysis

    torch.manual_seed(2)
    g_a = analysis(16, 24).eval()
    x = torch.rand(1, 3, 64, 80)
    monkeypatch.setattr(banded, "BAND_BYTES", 1 << 12)  # a few rows per band
    with torch.no_grad():
        assert torch.equal(banded.banded_forward(g_a, x, convolutions=False), g_a(x))
