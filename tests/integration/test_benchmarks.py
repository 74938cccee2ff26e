"""Every script in benchmarks/ still runs: ``--smoke`` (tiny inputs, one run) in its own process,
two at a time, each writing its results as JSON."""

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
# Too slow for the suite (seconds of CPU are scarce there); their --smoke runs by hand.
SLOW = {"variable_rate_cost": "trains three models in train.py processes and runs eval.py (~50 s of CPU)",
        "qvrf_ladders": "trains two models in train.py processes and runs eval.py (~40 s of CPU)",
        "startup": "times five whole processes (~20 s of CPU)",
        "portable_pixels": "decodes in six whole processes (~50 s of CPU; tests/formats/test_portable_pixels.py checks the same)"}
NEEDS = {"video_speed": ROOT / "models" / "stem.safetensors", "int8_product": ROOT / "models" / "stem_int8.safetensors"}


def _skip_reason(name: str) -> str | None:
    if name in SLOW and not os.environ.get("CODECLAB_SLOW_BENCHMARKS"):
        return f"{SLOW[name]}; CODECLAB_SLOW_BENCHMARKS=1 runs it"
    if name in NEEDS and not NEEDS[name].is_file():
        return f"needs {NEEDS[name]}"
    return None


@pytest.fixture(scope="module")
def smoke_runs(request, tmp_path_factory):
    """The selected benchmarks' smoke runs, started together (two at a time): name -> future."""
    spec = importlib.util.spec_from_file_location("_common", ROOT / "benchmarks" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    common.smoke_data()  # written once, before the runs read it side by side
    out = tmp_path_factory.mktemp("benchmarks")
    names = [item.callspec.params["name"] for item in request.session.items
             if getattr(item, "originalname", None) == "test_benchmark_smoke" and not _skip_reason(item.callspec.params["name"])]

    def run(name):
        proc = subprocess.run([sys.executable, f"benchmarks/{name}.py", "--smoke", "--json-file", str(out / f"{name}.json")],
                              cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "WANDB_MODE": "disabled"})
        return proc, out / f"{name}.json"

    with ThreadPoolExecutor(2) as pool:
        yield {name: pool.submit(run, name) for name in names}


def _every_part_of_the_split_was_timed(results: dict) -> None:
    """A part the decoder stopped calling through what the benchmark wraps would read 0."""
    for sequence in results["sequences"].values():
        for phase in ("encode", "decode"):
            assert all(share > 0 for share in sequence["codeclab"][phase]["share"].values()), (phase, sequence)


def _every_kernel_multiplied_the_recorded_shapes(results: dict) -> None:
    assert results["products"] > 0 and results["layers_use"] in ("native", "torch")
    assert set(results["ms"]) == {"native", "torch._int_mm", "float64", "float32"} and min(results["ms"].values()) > 0


CHECKS = {"video_speed": _every_part_of_the_split_was_timed, "int8_product": _every_kernel_multiplied_the_recorded_shapes}


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke(name, smoke_runs):
    if reason := _skip_reason(name):
        pytest.skip(reason)
    proc, path = smoke_runs[name].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(path.read_text())
    assert isinstance(results, dict) and results
    if name in CHECKS:
        CHECKS[name](results)
