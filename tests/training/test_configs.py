"""Every option of every Hydra config group composes, and its codec, data and module instantiate.

Paper-size codecs are built on the meta device (shapes only, no memory or time); the small ones
run one forward pass. Overrides that users and scripts rely on are pinned here too.
"""

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate

from codeclab.codecs import CODECS, Codec

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# Codecs small enough to build for real and run a forward pass in the suite.
SMALL = {"tiny", "s2lic_tiny", "mlicpp_tiny", "mlicv2_tiny", "walloc_tiny", "vqgan_tiny", "mcquic_tiny"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _compose(*overrides: str):
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides))



def _check_all(cfg, small: bool) -> None:
    if "network" in cfg.module:  # a module that builds what it trains (post-filter, JSCC): no codec
        with torch.device("meta"):
            assert not hasattr(instantiate(cfg.module), "codec")
        _check_other_groups(cfg)
        return
    if small:
        codec = instantiate(cfg.codec)
        x = torch.rand(1, 3, codec.downsampling, codec.downsampling)
        assert codec(x)["x_hat"].shape == x.shape
    else:
        with torch.device("meta"):
            codec = instantiate(cfg.codec)
    assert isinstance(codec, Codec) and codec.codec_id in CODECS
    instantiate(cfg.module, codec=codec)
    _check_other_groups(cfg)


def _check_other_groups(cfg) -> None:
    instantiate(cfg.data)
    for group in ("trainer", "logger", "callbacks"):
        for node in ([cfg[group]] if "_target_" in cfg[group] else (cfg[group] or {}).values()):
            if node is not None:
                get_class(node["_target_"])


@pytest.mark.parametrize("codec", options("codec"))
def test_every_codec_config_instantiates(codec):
    _check_all(_compose(f"codec={codec}"), codec in SMALL)


# Options that select a registered model under another name (mixture: mbt2018's context with Cheng's mixture;
# autoregressive_integer: mbt2018's context coding round(y)).
ENTROPY_ALIASES = {"mixture": "autoregressive", "autoregressive_integer": "autoregressive"}
# s2lic_tiny (M = 40): ELIC's default groups need M > 128; S2LIC's builder takes hyperprior-based models only.
S2LIC_TINY_OVERRIDES = {"elic": ["codec.entropy.groups=[8,8,8,8,8]"]}


@pytest.mark.parametrize("entropy", options("codec/entropy"))
@pytest.mark.parametrize("codec", ["s2lic_tiny", "he2021_checkerboard"])
def test_every_entropy_model_option_combines_with_a_codec(codec, entropy):
    if codec == "s2lic_tiny" and entropy == "factorized":
        pytest.skip("a factorized prior has no hyperprior (composed codecs take it: codec=leaderboard)")
    overrides = S2LIC_TINY_OVERRIDES.get(entropy, []) if codec == "s2lic_tiny" else []
    cfg = _compose(f"codec={codec}", f"codec/entropy={entropy}", *overrides)
    assert cfg.codec.entropy.name == ENTROPY_ALIASES.get(entropy, entropy)
    _check_all(cfg, codec in SMALL)


@pytest.mark.parametrize(
    "group", ["module", "data", "optim", "trainer", "logger", "callbacks", "experiment", "paths"]
)
def test_every_option_of_the_other_groups_composes(group):
    for option in options(group):
        # A Lightning module trains the codecs it was written for.
        codec = ["codec=vqgan_tiny"] if group == "module" and option.startswith("vqgan") else []
        codec = ["codec=stem"] if group == "module" and option == "stem" else codec
        codec = ["codec=mcquic_tiny"] if group == "module" and option == "mcquic" else codec
        _check_all(_compose(f"{group}={option}", *codec), small=False)


def test_the_overrides_users_rely_on_keep_working(tmp_path):
    cfg = _compose(
        "codec=s2lic_tiny", "codec.M=20", "codec/entropy=charm", "data.patch_size=64", "trainer.max_steps=7",
        "logger=csv", f"hydra.run.dir={tmp_path}",
    )
    assert (cfg.codec.M, cfg.codec.entropy.name, cfg.data.patch_size, cfg.trainer.max_steps) == (20, "charm", 64, 7)
    assert list(cfg.logger) == ["csv"]
    codec = instantiate(cfg.codec)
    assert codec.codec_id == "s2lic" and codec.config["entropy"]["name"] == "charm"
    assert type(codec.entropy_model).registry_name == "charm"


def test_a_codec_config_selects_its_lightning_module():
    assert _compose("codec=mbt2018_mean").module._target_ == "codeclab.training.RateDistortionModule"
    vqgan = _compose("codec=vqgan_tiny")
    assert vqgan.module._target_ == "codeclab.training.vqgan.VQGANModule" and vqgan.module.disc_start == 2
    assert _compose("codec=vqgan_tiny", "module.disc_start=9").module.disc_start == 9
    mcquic = _compose("codec=mcquic")
    assert mcquic.module._target_ == "codeclab.training.mcquic.McQuicModule"
    assert mcquic.module.optimizer._target_ == "codeclab.training.lamb.FusedLamb" and mcquic.module.optimizer.lr == 2e-4
    assert (mcquic.codec.m, list(mcquic.codec.k), mcquic.codec.channels) == (2, [8192, 2048, 512], 128)


def test_stem_selects_its_module_and_data():
    cfg = _compose("experiment=stem")
    assert cfg.module._target_ == "codeclab.training.stem.StemModule" and cfg.module.grad_clip == 5.0
    assert cfg.data.image_model == cfg.init_weights and cfg.init_weights.endswith("models/zoo/mbt2018_mean_vr.safetensors")
    assert [p.rsplit("/", 1)[-1] for p in cfg.data.sequences] == ["vid4_calendar", "vid4_foliage"]  # no test sequence
    assert cfg.codec.spatial == "checkerboard" and cfg.codec.rate_levels == 64


def test_a_codec_from_existing_parts_is_one_yaml_file():
    cfg = _compose("codec=he2021_checkerboard")
    assert cfg.codec._target_ == "codeclab.codecs.compose"
    with torch.device("meta"):
        codec = instantiate(cfg.codec)
    assert codec.codec_id == "composed"
    assert type(codec.entropy_model).registry_name == "checkerboard"
    assert codec.config["transform"] == {"name": "cnn", "N": 192, "M": 320}
