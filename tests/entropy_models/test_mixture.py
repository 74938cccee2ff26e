"""Cheng et al.'s discretized Gaussian mixture: the likelihood formula, normalisation, the
entropy-parameter layout, and exact coding including values far outside the window."""

import math

import pytest
import torch

from codeclab.codecs import cheng2020_anchor
from codeclab.entropy_models.mixture import MAX_RADIUS, GaussianMixtureConditional


def test_likelihood_is_the_papers_formula():
    mixture = GaussianMixtureConditional(3)
    logits, means, scales = [0.3, -1.0, 0.5], [0.2, -3.5, 7.0], [0.8, 2.0, 0.05]  # 0.05: bounded to 0.11
    params = torch.tensor(logits + means + scales).view(1, 9, 1, 1)
    weights = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]

    def phi(t):
        return 0.5 * math.erfc(-t / math.sqrt(2))

    for value in (-4.0, 0.0, 1.0, 7.0):
        expected = sum(w * (phi((value + 0.5 - m) / max(s, 0.11)) - phi((value - 0.5 - m) / max(s, 0.11)))
                       for w, m, s in zip(weights, means, scales))
        got = mixture.likelihood(torch.tensor(value).view(1, 1, 1, 1), params).item()
        assert got == pytest.approx(max(expected, 1e-9), rel=1e-5, abs=1e-9)


def test_probabilities_over_the_integers_sum_to_one():
    torch.manual_seed(0)
    mixture = GaussianMixtureConditional(3)
    params = torch.randn(1, 9 * 4, 1, 1).expand(1, 36, 801, 1)
    values = torch.arange(-400, 401).float().view(1, 1, -1, 1).expand(1, 4, 801, 1)
    total = mixture.likelihood(values, params).sum(2)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)


def test_cheng2020_uses_the_three_component_mixture_and_codes_exactly():
    torch.manual_seed(0)
    codec = cheng2020_anchor(N=16).eval()
    em = codec.entropy_model
    assert em.components == 3 and em.entropy_parameters[-1].out_channels == 9 * 16
    assert cheng2020_anchor(N=16, components=1).entropy_model.mixture is None
    x = torch.rand(1, 3, 64, 128)
    compressed = codec.compress(x)
    y_hat = codec.encode_latents(x)
    assert torch.equal(codec.decode_latents(compressed.strings, compressed.size), y_hat)
    with torch.no_grad():
        assert torch.equal(y_hat, torch.round(codec.g_a(x)))  # no mean offset under a mixture
        y = codec.g_a(x) * 10 ** 4  # far outside every window: escapes, coded exactly
        streams, encoded = em.compress(y, codec.coder)
        assert (encoded.abs() > MAX_RADIUS).any()
        assert torch.equal(em.decompress(streams, y.shape[-2:], codec.coder), encoded)
