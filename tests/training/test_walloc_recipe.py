"""WaLLoC's official training recipe (``danjacobellis/walloc``, ``train_rgb``, RGB model v1.0.2):
the log-domain cosine warm-up and ReduceLROnPlateau on the smoothed log MSE, each stepped every
128 steps (:class:`WarmupPlateau`), its constants in ``experiment=walloc_paper``, and a training
run through Lightning that follows the schedule."""

import functools
import math
import os
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from codeclab.codecs import walloc
from codeclab.data.datamodule import RandomCrops
from codeclab.training import RateDistortionModule
from codeclab.training.rate_distortion import WarmupPlateau

ROOT = Path(__file__).resolve().parents[2]
MIN_LR, MAX_LR, WARMUP, EVERY = 1e-7, 3e-5, 50000, 128


def _official_warmup_lr(i_step: int) -> float:
    """The notebook's ``minus_cosine_warmup(i_step) * min_lr``, ``i_step`` counting scheduler steps."""
    scale = 0.5 * (np.log10(MAX_LR) - np.log10(MIN_LR))
    angle = np.pi * i_step / (WARMUP // EVERY)
    return float(10 ** (np.log10(MIN_LR) + scale * (1 - np.cos(angle))))


def _optimizer(aux_lr: float = 1e-3):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=MIN_LR, weight_decay=0.0)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": aux_lr})
    return optimizer


# The schedule is stepped here without optimiser steps.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


def test_warmup_is_the_official_log_domain_cosine_stepped_every_128_steps():
    optimizer = _optimizer()
    schedule = WarmupPlateau(optimizer, MAX_LR)
    assert schedule.get_last_lr() == [MIN_LR, 1e-3]
    checked = {1, 2, 100, 195, 389, 390}
    for step in range(1, WARMUP + 1):
        schedule.step(1e-3)
        lr = optimizer.param_groups[0]["lr"]
        if step % EVERY == EVERY - 1:
            previous = lr  # unchanged until the 128th step
        elif step % EVERY == 0:
            assert step == EVERY or previous != lr
            if step // EVERY in checked:
                assert lr == pytest.approx(_official_warmup_lr(step // EVERY), rel=1e-9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(MAX_LR, rel=1e-9)
    assert optimizer.param_groups[1]["lr"] == 1e-3  # the quantiles keep their learning rate


def test_plateau_reduces_by_0_98_after_64_worse_updates_of_the_mean_log_mse():
    optimizer = _optimizer()
    schedule = WarmupPlateau(optimizer, MAX_LR, warmup_steps=EVERY)
    schedule.step(1e-3)  # inside the warm-up window: the first update ends the warm-up
    for _ in range(EVERY - 1):
        schedule.step(1e-3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(MAX_LR)

    def update(distortions):
        for value in distortions:
            schedule.step(value)

    update([1e-3] * EVERY)  # best mean log10 MSE: -3
    # Mean of log10, not log10 of the mean: these average to -3 exactly (no improvement, no worse).
    for _ in range(64):
        update([1e-2, 1e-4] * (EVERY // 2))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(MAX_LR)  # on log values, "equal" is not worse
    for _ in range(64):
        update([2e-3] * EVERY)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(MAX_LR)  # 64 worse updates: patience not exceeded
    update([2e-3] * EVERY)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.98 * MAX_LR)
    assert optimizer.param_groups[1]["lr"] == 1e-3

    state = schedule.state_dict()
    restored = WarmupPlateau(_optimizer(), MAX_LR, warmup_steps=EVERY)
    restored.load_state_dict(state)
    assert restored.steps == schedule.steps and restored.plateau.best == schedule.plateau.best == -3.0


def test_the_lr_never_falls_below_min_lr_and_bad_configs_are_refused():
    optimizer = _optimizer()
    schedule = WarmupPlateau(optimizer, MAX_LR, warmup_steps=1, update_every=1, patience=0, factor=0.01)
    for value in [1e-3] + [1.0] * 10:
        schedule.step(value)
    assert optimizer.param_groups[0]["lr"] == MIN_LR
    with pytest.raises(ValueError, match="warm-up's start"):
        WarmupPlateau(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4), max_lr=3e-5)


def _compose(*overrides):
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_walloc_trains_with_the_official_optimiser_by_default():
    for codec in ("walloc", "walloc_4x", "walloc_factorized", "walloc_tiny"):
        assert _compose(f"codec={codec}").optim.lr_scheduler._target_.endswith("WarmupPlateau")
    project = _compose("experiment=walloc_bsds").optim  # the recipe of the committed models
    assert (project.optimizer._target_, project.optimizer.lr, project.grad_clip) == ("torch.optim.Adam", 3e-4, 1.0)
    assert _compose("codec=mbt2018_mean").optim.optimizer._target_ == "torch.optim.Adam"


def test_walloc_paper_experiment_holds_the_official_constants():
    cfg = _compose("experiment=walloc_paper")
    optim, data = cfg.optim, cfg.data
    assert optim.optimizer._target_ == "torch.optim.AdamW"
    assert (optim.optimizer.lr, optim.optimizer.weight_decay, optim.grad_clip) == (1e-7, 0.0, 0.0)
    schedule = optim.lr_scheduler
    assert schedule._target_ == "codeclab.training.rate_distortion.WarmupPlateau"
    assert (schedule.max_lr, schedule.warmup_steps, schedule.update_every) == (3e-5, 50000, 128)
    assert (schedule.factor, schedule.patience, schedule.threshold) == (0.98, 64, 1e-5)
    assert (data.patch_size, data.batch_size, data.flip) == (256, 64, False)
    assert data.samples_per_epoch // data.batch_size == 1327 and cfg.trainer.max_steps == 150 * 1327
    assert cfg.lmbda * 255**2 == pytest.approx(1.0)  # the loss is the MSE itself
    assert (cfg.codec.bottleneck, cfg.codec.transform, cfg.codec.decoder_channels) == ("bounded", "walloc", 768)


def test_crops_without_flips_are_windows_of_the_image(photo):
    from codeclab.data.images import to_tensor

    class One:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return photo

    windows = to_tensor(photo).unfold(1, 32, 1).unfold(2, 32, 1)  # [3, h, w, 32, 32]

    def is_window(crop):
        return bool((windows == crop[:, None, None]).all(-1).all(-1).all(0).any())

    torch.manual_seed(0)
    assert all(is_window(RandomCrops(One(), 32, flip=False)[0]) for _ in range(20))
    assert not all(is_window(RandomCrops(One(), 32, flip=True)[0]) for _ in range(20))  # mirrored ones


def test_a_bounded_walloc_trains_under_the_schedule(photo):
    """Lightning feeds the schedule each step's MSE: the warm-up raises the learning rate on
    schedule, and the MSE-only loss falls."""
    from codeclab.data.images import to_tensor

    torch.manual_seed(0)
    codec = walloc(levels=2, latent_channels=6, decoder_channels=16, decoder_groups=4)
    schedule = functools.partial(WarmupPlateau, max_lr=3e-3, warmup_steps=40, update_every=4)
    module = RateDistortionModule(codec, lmbda=1 / 255**2, grad_clip=0.0, lr_scheduler=schedule,
                                  optimizer=functools.partial(torch.optim.AdamW, lr=3e-4, weight_decay=0.0))
    lrs, losses = [], []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
            losses.append(float(outputs["rd_loss"]))

    batch = to_tensor(photo)[:, :64, :64][None].repeat(2, 1, 1, 1)
    trainer = pl.Trainer(max_steps=60, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Record()], accelerator="cpu")
    trainer.fit(module, DataLoader([batch] * 60, batch_size=None))
    assert lrs[2] == pytest.approx(3e-4) and lrs[3] > 3e-4  # first update after 4 steps
    assert lrs[39] == pytest.approx(3e-3)  # warm-up complete after 40 steps
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert math.isfinite(losses[-1])
