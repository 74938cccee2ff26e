"""``train.py`` end to end: the closing summary, and training that runs no step writes no model."""

import os
import pickle
import subprocess
import sys

import torch

from codeclab.coding import get_coder
from codeclab.formats.model_file import load_model
from tests.conftest import ROOT

TINY = ["codec=tiny", "logger=csv", "data.patch_size=64", "data.val_patch_size=64", "data.val_max_images=2"]


def _train(*overrides):
    env = dict(os.environ, WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "train.py", *TINY, *map(str, overrides)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def test_train_ends_with_a_summary(trained_run):
    lines = (trained_run / "stdout.txt").read_text().splitlines()[-4:]
    assert lines[0] == "trained 40 steps"
    assert lines[1].startswith("last validation: ") and " bpp (real " in lines[1] and lines[1].endswith(" dB")
    assert lines[2:] == [f"last checkpoint: {trained_run / 'checkpoints' / 'last.ckpt'}", f"model file: {trained_run / 'model.safetensors'}"]


def test_zero_training_steps_are_an_error_and_write_no_model(trained_run, tmp_path):
    # 2 crops an epoch in batches of 4 (full batches only): no batch at all.
    empty = _train("data.samples_per_epoch=2", "data.batch_size=4", f"hydra.run.dir={tmp_path / 'empty'}")
    assert empty.returncode == 1 and not (tmp_path / "empty" / "model.safetensors").exists()
    assert empty.stderr.splitlines()[-1] == (
        "train.py: error: training ran 0 steps: the training data gives no full batch per process (world size 1): "
        "lower data.batch_size or raise data.samples_per_epoch; no model written")
    # Resuming a run that already reached trainer.max_steps trains nothing either.
    done = _train("trainer.max_steps=40", "data.batch_size=4", "data.samples_per_epoch=20",
                  f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'done'}")
    assert done.returncode == 1 and not (tmp_path / "done" / "model.safetensors").exists()
    assert done.stderr.splitlines()[-1] == ("train.py: error: training ran 0 steps: the run was already finished at step 40 "
                                            "(raise trainer.max_steps to continue); no model written")


def test_bad_settings_are_refused_before_the_first_step(tmp_path):
    small = _train("data.patch_size=3", "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'small'}")
    assert small.returncode == 1 and small.stderr.splitlines()[-1] == (
        "train.py: error: data.patch_size=3 must be a positive multiple of mbt2018-mean's downsampling 64")
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps(os.system))  # would run a command if unpickled
    refused = _train(f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'evil'}")
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1].startswith(
        f"train.py: error: ckpt_path {evil} is not a checkpoint this version loads safely: ")
    assert not (tmp_path / "evil" / "model.safetensors").exists()


def test_int8_hyper_synthesis_is_calibrated_trained_and_exported(tmp_path):
    """``arithmetic=int8``: the 8-bit layers' input grids are set on training batches before the
    first step; the file holds them and codes an image exactly."""
    run = _train("+codec.arithmetic=int8", "trainer.max_steps=3", "data.batch_size=2", "data.samples_per_epoch=6",
                 f"hydra.run.dir={tmp_path}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "calibrated the inputs of 3 8-bit layers" in run.stdout  # h_s: two transposed convolutions, one convolution
    codec = load_model(tmp_path / "model.safetensors")
    assert codec.entropy_model.arithmetic == "int8"
    x = torch.rand(1, 3, 64, 64)
    compressed = codec.compress(x, get_coder())
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, get_coder()), codec.quantize(x))
