"""tools/gpu_checks.py end to end on the CPU (on a lent GPU its ``device`` step runs there)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    proc = subprocess.run([sys.executable, "tools/gpu_checks.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_prepare_device_verify_compare_latents_and_time_a_frame(trained_model, photo, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(photo).save(image)
    _run("prepare", trained_model, image, "--out", tmp_path / "cpu")
    _run("device", trained_model, tmp_path / "cpu", image, "--out", tmp_path / "dev", "--frame", "96x64")
    _run("verify", trained_model, tmp_path / "dev", "--out", tmp_path / "dev")

    device = json.loads((tmp_path / "dev" / "checks_device.json").read_text())
    decoded = device["cpu_files_decoded_here"]
    assert (decoded["files"], decoded["latent_mismatches"]) == (1, 0)  # a fixed-rate model: one file per image
    assert decoded["pixels_vs_cpu"] == {"images": 1, "max_abs_diff": 0, "differing_samples": 0.0}  # same device here
    throughput = device["throughput"]
    assert throughput["frame"] == "96x64, one block" and throughput["bytes"] > 0
    assert np.isfinite(throughput["encode_fps"]) and throughput["decode_fps"] > 0
    verified = json.loads((tmp_path / "dev" / "checks_verify.json").read_text())["device_files_decoded_on_cpu"]
    assert (verified["files"], verified["latent_mismatches"]) == (1, 0)


def test_a_changed_latent_is_reported_as_a_mismatch(trained_model, photo, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(photo).save(image)
    _run("prepare", trained_model, image, "--out", tmp_path / "cpu")
    digests = tmp_path / "cpu" / "cpu_latents.json"
    digests.write_text(json.dumps({name: "0" * 64 for name in json.loads(digests.read_text())}))
    _run("device", trained_model, tmp_path / "cpu", image, "--out", tmp_path / "dev", "--frame", "64x64")
    decoded = json.loads((tmp_path / "dev" / "checks_device.json").read_text())["cpu_files_decoded_here"]
    assert decoded["latent_mismatches"] == 1 and decoded["mismatched"] == ["photo"]
