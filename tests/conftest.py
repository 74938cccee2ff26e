import os
import subprocess
import sys
from pathlib import Path

# Tests run small tensors: one intra-op thread per process (this one and the train.py / CLI
# subprocesses) avoids thread oversubscription, which slows them many times on a busy 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
ROOT = Path(__file__).resolve().parents[1]


def rewrite_model_file(path, mutate_tensors=None, mutate_meta=None, target=None):
    """The model file at ``path`` with its tensors and metadata changed in place
    (``mutate_tensors(tensors)``, ``mutate_meta(meta, tensors)``), written to ``target`` (default:
    ``path`` itself); returns the path written."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    if mutate_tensors:
        mutate_tensors(tensors)
    if mutate_meta:
        mutate_meta(meta, tensors)
    target = target or path
    save_file(tensors, str(target), metadata=meta)
    return target


def run_cli(*args, check=False, cwd=None):
    """Run ``codeclab ARGS`` in a fresh process; returns the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "codeclab.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"codeclab {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_main(*args, check=False, cwd=None):
    """``codeclab ARGS`` in this process (no interpreter or torch start-up: most CLI tests), with
    its stdout, stderr and exit status in a CompletedProcess like :func:`run_cli`'s."""
    import contextlib
    import io

    from codeclab.cli import main

    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as stop:  # argparse's usage errors
                code = stop.code
    finally:
        os.chdir(before)
    proc = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"codeclab {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny mean-scale model trained end to end by ``train.py`` (real steps, real export)."""
    run_dir = tmp_path_factory.mktemp("train_run")
    cmd = [
        sys.executable, "train.py", "codec=tiny", "logger=csv", "trainer.max_steps=40",
        "data.patch_size=64", "data.batch_size=4", "data.val_patch_size=64", "data.val_max_images=2",
        "data.samples_per_epoch=20", "optim.optimizer.lr=1e-3", "callbacks.checkpoint.every_n_train_steps=20",
        f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, WANDB_MODE="disabled")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir / "stdout.txt").write_text(proc.stdout)
    return run_dir


@pytest.fixture(scope="session")
def trained_model(trained_run):
    return trained_run / "model.safetensors"


@pytest.fixture
def photo():
    """A real photograph crop (scikit-image's astronaut), uint8 [H, W, 3], odd size."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[100:197, 150:281])


def image_tensor(image: np.ndarray) -> torch.Tensor:
    from codeclab.data.images import to_tensor

    return to_tensor(image)[None]


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (``--dist loadgroup``, the default options): a test file runs on one
    worker in file order (its module fixtures are built once), unless its tests name groups of
    their own (the README commands: independent chains, so one long file spreads over workers).
    Named groups go first, so the longest units start while the rest fill the other workers."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    items.sort(key=lambda item: item.get_closest_marker("xdist_group").args[0].startswith("tests/"))
