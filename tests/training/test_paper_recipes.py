"""Training recipes and configs as the official code (issue 29): McQuic's apex FusedLAMB, MLIC++'s
epoch MultiStepLR, MLICv2's selective switch, QVRF's stage 1, and the format-6 migration that keeps
older model files on the behaviour they were trained with (tools/mutation_check.py)."""

import math

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from codeclab.codecs import mbt2018_mean
from codeclab.compat import migrate_config
from codeclab.formats.model_file import load_model
from codeclab.training.lamb import FusedLamb
from codeclab.training.rate_distortion import RateDistortionModule
from tests.conftest import ROOT

CONFIGS = ROOT / "configs"


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _apex_lamb_steps(w0s, grads_per_step, lr, wd=0.01, b1=0.9, b2=0.999, eps=1e-6, clip=1.0):
    """apex's multi_tensor_lamb written out: global-norm clipping, bias-corrected Adam moments,
    decoupled weight decay, trust ratio ||w|| / ||u||."""
    ws = [w.clone().double() for w in w0s]
    ms = [torch.zeros_like(w) for w in ws]
    vs = [torch.zeros_like(w) for w in ws]
    for t, grads in enumerate(grads_per_step, start=1):
        norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
        c = norm / clip if norm > clip else 1.0
        for w, m, v, g in zip(ws, ms, vs, grads):
            g = g.double() / c
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps) + wd * w
            r = float(w.norm() / u.norm())
            w.sub_(lr * r * u)
    return ws


def test_fused_lamb_is_apex_fusedlamb_written_out():
    torch.manual_seed(3)
    w0s = [torch.randn(5, 3), torch.randn(4)]
    steps = [[10 * torch.randn(5, 3), 10 * torch.randn(4)] for _ in range(3)]  # global norm > 1: clipped
    params = [torch.nn.Parameter(w.clone()) for w in w0s]
    optimizer = FusedLamb(params, lr=2e-4)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
    for p, expected in zip(params, _apex_lamb_steps(w0s, steps, 2e-4)):
        torch.testing.assert_close(p.detach().double(), expected, rtol=1e-6, atol=1e-9)


def test_mcquic_module_optimiser_is_fused_lamb():
    cfg = OmegaConf.load(CONFIGS / "module" / "mcquic.yaml")
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert type(optimizer) is FusedLamb and optimizer.defaults["lr"] == 2e-4
    assert optimizer.defaults["bias_correction"] and optimizer.defaults["weight_decay"] == 0.01


def test_mlicv2_selective_compression_is_off_in_both_configs():
    for path in (CONFIGS / "codec" / "mlicv2.yaml", CONFIGS / "codec" / "entropy" / "mlicv2.yaml"):
        assert OmegaConf.load(path).selective is False, path


def test_mlic_paper_uses_the_released_multistep_schedule():
    """MLIC++/train.py: ``MultiStepLR(milestones=[80, 100], gamma=0.1)`` once per epoch, no warm-up."""
    cfg = _compose("experiment=mlic_paper")
    assert cfg.optim.lr_scheduler._target_ == "codeclab.training.rate_distortion.epoch_multistep"
    assert cfg.optim.optimizer.lr == 1e-4 and cfg.optim.aux_lr == 1e-3 and cfg.optim.grad_clip == 1.0
    per_epoch = int(cfg.optim.lr_scheduler.steps_per_epoch)
    assert per_epoch == cfg.data.samples_per_epoch // cfg.data.batch_size
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    scheduler = instantiate(cfg.optim.lr_scheduler)(optimizer)
    factor = scheduler.lr_lambdas[0]
    assert factor(0) == 1 and factor(80 * per_epoch - 1) == 1
    assert math.isclose(factor(80 * per_epoch), 0.1) and math.isclose(factor(100 * per_epoch - 1), 0.1)
    assert math.isclose(factor(100 * per_epoch), 0.01)


def test_qvrf_stage_one_trains_level_zero_at_the_largest_lambda():
    """bytedance/QRAF stage 1: ``s = levels - 1`` (lambda 0.18) with ``Gain[0]``; afterwards one
    random level per sample with its own lambda."""
    torch.manual_seed(0)
    codec = mbt2018_mean(N=8, M=12, rate_levels=8, scale_table_levels=256,
                         lmbdas=[0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18])
    module = RateDistortionModule(codec, single_rate_steps=1)
    seen = []

    def losses(x, level=None, lmbda=None):
        seen.append((level.clone(), None if lmbda is None else float(lmbda)))
        zero = x.sum() * 0
        return {"loss": zero, "bpp_loss": zero, "mse_loss": zero, "psnr": zero}

    module._losses = losses
    batch = torch.rand(16, 3, 32, 32)
    module.training_step(batch, 0)  # global_step 0 < single_rate_steps
    level, lmbda = seen[-1]
    assert torch.equal(level, torch.zeros(16, dtype=level.dtype)) and math.isclose(lmbda, 0.18, rel_tol=1e-6)
    module.single_rate_steps = 0
    module.training_step(batch, 1)
    level, lmbda = seen[-1]
    assert lmbda is None and level.unique().numel() > 1


def test_files_before_format_6_keep_their_training_details():
    olds = {
        "stem": {"N": 128, "M": 192, "spatial": "checkerboard", "residual_grid": "mean"},
        "mcquic": {"channels": 128, "m": 2, "k": [8192], "ema": 0.9},
    }
    expected = {"stem": {"residual_rate": "noise", "context_input": "noise"},
                "mcquic": {"ema_rule": "counts", "reassign_rule": "head"}}
    later = {"stem": {"mean_offsets": 0}, "mcquic": {}}  # added in format 9 (below)
    for name, config in olds.items():
        for version in (3, 5):
            assert migrate_config(name, version, config) == {**config, **expected[name], **later[name]}, (name, version)
        assert migrate_config(name, 6, config) == {**config, **later[name]}
    # cheng2020's format-5 files: the official mixture (the switch that chose it left in format 7).
    config = {"N": 192, "components": 3, "mixture_layout": "official"}
    assert migrate_config("cheng2020-anchor", 5, config) == {"N": 192, "components": 3, "leaky_slope": 0.01,
                                                             "robust_tails": False, "entropy": "autoregressive"}
    # The shipped STEM model keeps the noisy training it had since format 3; exported since the
    # reference grid (formats 8-9), it codes P-frames on it. Files from before residual_grid round
    # around the mean.
    model = load_model(ROOT / "models" / "stem.safetensors").temporal_model
    assert (model.residual_rate, model.context_input, model.residual_grid) == ("noise", "noise", "reference")
    for version in (3, 8):
        assert migrate_config("stem", version, {"N": 8})["residual_grid"] == "mean"
    assert migrate_config("stem", 8, {"residual_grid": "reference"})["residual_grid"] == "reference"
    # Format-9 files written before mean_offsets round the P-frames' means to the grid; the shipped
    # file (since 2026-12-06, stage 6) resolves them to 1/16.
    assert model.gaussian_conditional.mean_offsets == 16
    assert migrate_config("stem", 9, {"N": 8})["mean_offsets"] == 0
    assert migrate_config("stem", 9, {"mean_offsets": 16})["mean_offsets"] == 16
    assert load_model(ROOT / "models" / "stem_int8.safetensors").temporal_model.gaussian_conditional.mean_offsets == 0
