"""``trainer=ddp``: two processes on CPU (gloo) train one model through train.py, with the default
data (7 bundled photographs, batches of 8: Lightning's DistributedSampler over the images gave
each process 4 images, so zero batches)."""

import os
import subprocess
import sys
from pathlib import Path

from codeclab.formats.model_file import load_model

ROOT = Path(__file__).resolve().parents[2]


def test_ddp_trains_with_two_cpu_processes(tmp_path):
    cmd = [
        sys.executable, "train.py", "codec=tiny", "trainer=ddp", "trainer.accelerator=cpu", "trainer.max_steps=3",
        "logger=csv", "data.val_patch_size=64", "data.val_max_images=2", f"hydra.run.dir={tmp_path}",
    ]
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "distributed_backend=gloo" in output and "All distributed processes registered" in output
    assert "MEMBER: 2/2" in output
    assert "trained 3 steps" in proc.stdout and proc.stdout.count("trained 3 steps") == 1  # rank 0's summary only
    assert "💡" not in output and "deprecated" not in output  # quiet: no advertisements, no deprecation noise
    assert (tmp_path / "train_ddp_process_1.log").is_file()  # the second rank ran train.py too
    assert load_model(tmp_path / "model.safetensors").codec_id == "mbt2018-mean"
