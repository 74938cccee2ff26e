"""tools/gpu_recipe.sh end to end on the CPU with a few steps (the GPU run itself is hand-run)."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (DATA / "kodak").is_dir() or not (DATA / "train" / "bsds500").is_dir(), reason="needs ../shared/data")
def test_gpu_recipe_writes_model_curve_and_kodak_report(tmp_path):
    env = dict(
        os.environ, OUT=str(tmp_path), OMP_NUM_THREADS="1", INIT=str(tmp_path / "none.safetensors"),
        TRAIN_ARGS="trainer.accelerator=cpu trainer.max_steps=3 trainer.log_every_n_steps=1 data.batch_size=2 "
                   "data.num_workers=0 data.patch_size=64 data.val_patch_size=64 data.val_max_images=1 data.samples_per_epoch=6",
        EVAL_ARGS="max_images=1 rate_points=2",
    )
    proc = subprocess.run(["bash", "tools/gpu_recipe.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("model.safetensors", "metrics.csv", "kodak_report.md", "kodak_curve.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "mbt2018_mean_vr | learned | 2" in (tmp_path / "kodak_report.md").read_text()
