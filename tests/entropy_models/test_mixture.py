"""Cheng et al.'s discretized Gaussian mixture: the likelihood formula, normalisation, the
entropy-parameter layout of the official TensorFlow code (and CodecLab's first one, in
codeclab.compat), and exact
coding including values far outside the window."""

import math

import pytest
import torch

from codeclab.codecs import cheng2020_anchor
from codeclab.coding import get_coder
from codeclab.compat.entropy_models import GaussianMixtureConditionalV1
from codeclab.entropy_models.mixture import MAX_RADIUS, GaussianMixtureConditional

CODER = get_coder()


LOGITS, MEANS, SCALES = [0.3, -1.0, 0.5], [0.2, -3.5, 7.0], [0.8, -2.0, 0.05]  # |-2|; 0.05: bounded to 0.11


def _papers_likelihood(value: float) -> float:
    weights = [math.exp(v) / sum(math.exp(u) for u in LOGITS) for v in LOGITS]

    def phi(t):
        return 0.5 * math.erfc(-t / math.sqrt(2))

    return sum(w * (phi((value + 0.5 - m) / max(abs(s), 0.11)) - phi((value - 0.5 - m) / max(abs(s), 0.11)))
               for w, m, s in zip(weights, MEANS, SCALES))


@pytest.mark.parametrize("mixture_class, channels, bound", [
    # tf.split(params, 9) -> prob0, mean0, scale0, prob1, mean1, scale1, ... (Cheng et al.'s code)
    (GaussianMixtureConditional, [v for k in range(3) for v in (LOGITS[k], MEANS[k], SCALES[k])], 1e-6),
    (GaussianMixtureConditionalV1, LOGITS + MEANS + SCALES, 1e-9),
])
def test_likelihood_is_the_papers_formula_in_each_channel_layout(mixture_class, channels, bound):
    mixture = mixture_class(3)
    params = torch.tensor(channels).view(1, 9, 1, 1)
    for value in (-4.0, 0.0, 1.0, 7.0, 60.0):
        got = mixture.likelihood(torch.tensor(value).view(1, 1, 1, 1), params).item()
        assert got == pytest.approx(max(_papers_likelihood(value), bound), rel=1e-5, abs=1e-12)
    far = mixture.likelihood(torch.tensor(60.0).view(1, 1, 1, 1), params).item()
    assert far == pytest.approx(bound, rel=1e-6)  # the training lower bound of each layout


def test_official_entropy_parameters_hyper_gradient_and_clip():
    """Cheng et al.'s ``entropy_parameter``: 1x1 layers of 640, 640 (whatever N) and 9 N without a
    bias; ``z = h_a(stop_gradient(y))``; ``y`` clipped to [-255, 256]. Legacy: mbt2018's widths."""
    official = cheng2020_anchor(N=24).entropy_model
    widths = [(c.in_channels, c.out_channels, c.bias is not None) for c in official.entropy_parameters if isinstance(c, torch.nn.Conv2d)]
    assert widths == [(96, 640, True), (640, 640, True), (640, 216, False)]
    legacy = cheng2020_anchor(N=24, entropy="autoregressive_v1").entropy_model
    widths = [(c.in_channels, c.out_channels, c.bias is not None) for c in legacy.entropy_parameters if isinstance(c, torch.nn.Conv2d)]
    assert widths == [(96, 80, True), (80, 64, True), (64, 216, True)]
    assert cheng2020_anchor(N=24, components=1).entropy_model.entropy_parameters[-1].out_channels == 48

    for model, reaches_y in ((official, False), (legacy, True)):
        torch.manual_seed(0)
        y = (torch.randn(1, 24, 8, 8) * 300).requires_grad_()
        model.train()
        out = model(y)
        rate_of_z = torch.log(out["likelihoods"]["z"]).sum()
        (grad,) = torch.autograd.grad(rate_of_z, y, allow_unused=True)
        assert (grad is not None and bool(grad.abs().sum() > 0)) == reaches_y
        assert (out["y_hat"].abs().max() > 256.5).item() == reaches_y  # y_tilde = clip(y) + noise


def test_probabilities_over_the_integers_sum_to_one():
    torch.manual_seed(0)
    mixture = GaussianMixtureConditional(3)
    params = torch.randn(1, 9 * 4, 1, 1).expand(1, 36, 801, 1)
    values = torch.arange(-400, 401).float().view(1, 1, -1, 1).expand(1, 4, 801, 1)
    total = mixture.likelihood(values, params).sum(2)
    assert torch.allclose(total, torch.ones_like(total), atol=801 * mixture.likelihood_bound + 1e-5)  # 801 bounded tails


def test_cheng2020_uses_the_three_component_mixture_and_codes_exactly():
    torch.manual_seed(0)
    codec = cheng2020_anchor(N=16).eval()
    em = codec.entropy_model
    assert em.components == 3 and em.entropy_parameters[-1].out_channels == 9 * 16
    assert cheng2020_anchor(N=16, components=1).entropy_model.mixture is None
    x = torch.rand(1, 3, 64, 128)
    compressed = codec.compress(x, CODER)
    y_hat = codec.quantize(x)
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, CODER), y_hat)
    with torch.no_grad():
        assert torch.equal(y_hat, torch.round(codec.g_a(x)))  # no mean offset under a mixture
        y = codec.g_a(x) * 10 ** 4  # far outside every window: escapes, coded exactly
        streams, encoded = em.compress(y, CODER)
        assert (encoded.abs() > MAX_RADIUS).any()
        assert torch.equal(em.decompress(streams, y.shape[-2:], CODER), encoded)
