"""The rate-distortion loss equals compressai's for one lambda and uses each sample's lambda."""

import pytest
import torch
from compressai.losses import RateDistortionLoss

from codeclab.codecs import mbt2018_mean
from codeclab.training.rate_distortion import rate_distortion_loss


@pytest.fixture(scope="module")
def forward_pass():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 192, 192)
    return mbt2018_mean(16, 24)(x), x


@pytest.mark.parametrize("metric", ["mse", "ms-ssim"])
def test_equals_compressai_for_one_lambda(forward_pass, metric):
    out, x = forward_pass
    theirs = RateDistortionLoss(lmbda=0.013, metric=metric)(out, x)
    ours = rate_distortion_loss(out, x, 0.013, metric)
    assert torch.allclose(ours["loss"], theirs["loss"], rtol=1e-6)
    assert torch.allclose(ours["bpp_loss"], theirs["bpp_loss"], rtol=1e-6)


def test_each_sample_gets_its_own_lambda(forward_pass):
    out, x = forward_pass
    lmbdas = torch.tensor([0.0018, 0.013, 0.0483])
    together = rate_distortion_loss(out, x, lmbdas)["loss"]
    alone = [
        rate_distortion_loss({"x_hat": out["x_hat"][i : i + 1], "likelihoods": {k: v[i : i + 1] for k, v in out["likelihoods"].items()}},
                             x[i : i + 1], float(lmbdas[i]))["loss"]
        for i in range(3)
    ]
    assert torch.allclose(together, torch.stack(alone).mean(), rtol=1e-6)
