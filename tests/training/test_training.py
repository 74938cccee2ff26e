import functools

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from codeclab.codecs import cheng2020_anchor, elic, mbt2018, mbt2018_mean
from codeclab.coding import get_coder
from codeclab.training import RateDistortionModule

CODER = get_coder()


class _Losses(pl.Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.values.append(float(outputs["rd_loss"]))


def _fit(steps, codec, batch):
    module = RateDistortionModule(codec, lmbda=0.01, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    losses = _Losses()
    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[losses], accelerator="cpu",
    )
    trainer.fit(module, DataLoader([batch] * steps, batch_size=None))
    return module, losses.values


def test_loss_decreases_and_aux_trains_only_quantiles(photo):
    torch.manual_seed(0)
    from codeclab.data.images import to_tensor

    batch = to_tensor(photo)[:, :64, :64][None].repeat(2, 1, 1, 1)
    codec = mbt2018_mean(N=16, M=24)
    aux_before = float(codec.aux_loss().detach())
    quantiles_before = codec.entropy_model.entropy_bottleneck.quantiles.detach().clone()
    module, losses = _fit(30, codec, batch)
    assert len(losses) == 30  # one optimiser step per training step
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses
    assert float(codec.aux_loss().detach()) < aux_before
    assert not torch.equal(quantiles_before, codec.entropy_model.entropy_bottleneck.quantiles)
    # Real coding works straight after training, tables rebuilt automatically.
    codec.eval()
    compressed = codec.compress(batch[:1], CODER)
    assert codec.decompress(compressed, CODER).shape == batch[:1].shape


def test_aux_loss_has_no_gradient_on_main_parameters():
    codec = mbt2018_mean(N=16, M=24)
    codec.aux_loss().backward()
    for name, param in codec.named_parameters():
        if not name.endswith("quantiles"):
            assert param.grad is None or not param.grad.any(), name


def test_quantiles_in_own_param_group():
    module = RateDistortionModule(mbt2018_mean(N=16, M=24), aux_lr=5e-3)
    optimizer = module.configure_optimizers()
    main, aux = optimizer.param_groups
    assert aux["lr"] == 5e-3 and len(aux["params"]) == 1
    assert aux["params"][0] is module.codec.entropy_model.entropy_bottleneck.quantiles
    assert all(p is not aux["params"][0] for p in main["params"])


def test_quantisation_aware_fine_tune_of_a_float_model(photo):
    """A float model converts to integer entropy parameters (same weights) and fine-tunes with
    them quantisation-aware: the loss falls and the result codes exactly."""
    from codeclab.codecs.base import with_arithmetic
    from codeclab.data.images import to_tensor

    torch.manual_seed(0)
    batch = to_tensor(photo)[:, :64, :64][None].repeat(2, 1, 1, 1)
    codec = with_arithmetic(mbt2018_mean(N=16, M=24), "integer")
    h_s_before = codec.entropy_model.h_s[0].weight.detach().clone()
    _, losses = _fit(30, codec, batch)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses
    assert not torch.equal(h_s_before, codec.entropy_model.h_s[0].weight)  # the integer networks trained too
    codec.eval()
    compressed = codec.compress(batch[:1], CODER)
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, CODER), codec.quantize(batch[:1]))


@pytest.mark.parametrize("build", [
    lambda: mbt2018(N=16, M=24), lambda: cheng2020_anchor(N=16), lambda: elic(N=16, M=40, groups=[4, 4, 8, 24]),
], ids=["mbt2018", "cheng2020-anchor", "elic"])
def test_the_compressai_baselines_train(build, photo):
    """The baselines added for issue 16 train through the same module as every codec: the loss
    falls over a few steps on one image."""
    from codeclab.data.images import to_tensor

    torch.manual_seed(0)
    batch = to_tensor(photo)[:, :64, :64][None].repeat(2, 1, 1, 1)
    _, losses = _fit(20, build(), batch)
    assert len(losses) == 20 and sum(losses[-4:]) < 0.8 * sum(losses[:4]), losses
