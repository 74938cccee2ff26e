"""Coding-path start-up: what ``codeclab encode``/``decode`` cost before their first work, and
what ``codeclab decode`` costs beyond ``import torch`` and the decode.

For one image (default kodim01) and a hyperprior model (mbt2018-mean, N, M = 128, 192, seeded
random weights: the network cost equals a trained model's), each source tree under test:

1. writes the model file and encodes the image with its own code (so older trees write their
   own model format);
2. times, alternating between trees and commands, ``python -c 'import torch'``, ``codeclab
   decode FILE -o OUT.png -m MODEL`` as a whole process, and the time to first work of
   ``codeclab encode`` and ``codeclab decode``: from the process's start to the call of
   ``encode_image``/``decode_image`` (arguments parsed, image read, model loaded; the process
   stops there), and ``codeclab info`` of the file and of the model; wall and CPU times (user +
   system: less sensitive to other load on the machine), median of ``--runs``;
3. in one process, times the steps of a decode: imports beyond torch, model load, decode
   (``decode_image``, repeated ``--runs`` times in the warm process: median) and PNG write.

``first work / import torch`` is the start-up ratio of issue 27 (1.0: start-up costs nothing
beyond torch). ``overhead = decode command - import torch - warm decode``: the start-up target
of issue 11 is at most 1 s with the current tree. ``--baseline DIR`` adds another checkout (with
its C++ coder built: ``python setup.py build_ext --inplace``), e.g. an earlier commit, measured
side by side in the same run.

Usage: python benchmarks/startup.py [--json] [--json-file PATH] [--runs 3] [--image PNG] [--baseline DIR] [--smoke]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# Runs inside the tree under test: writes a seeded mbt2018-mean model file.
MAKE_MODEL = """
import sys, torch
from codeclab.codecs import build_codec
try:
    from codeclab.formats.model_file import export_model
except ImportError:  # trees from before codeclab.formats
    from codeclab.model_file import export_model
torch.manual_seed(0)
export_model(build_codec("mbt2018-mean", {"N": 128, "M": 192}).eval(), sys.argv[1])
"""

# Runs inside the tree under test: the steps of one decode, timed in one process.
STEPS = """
import json, statistics, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
try:
    from codeclab.formats.image_file import decode_image
    from codeclab.formats.model_file import load_model
except ImportError:
    from codeclab.image_codec import decode_image
    from codeclab.model_file import load_model
from codeclab.cli import _write_image
from pathlib import Path
t2 = time.perf_counter()
codec = load_model(sys.argv[2])
t3 = time.perf_counter()
data = Path(sys.argv[1]).read_bytes()
decode_s = []
for _ in range(int(sys.argv[4])):
    start = time.perf_counter()
    image = decode_image(data, codec)
    decode_s.append(time.perf_counter() - start)
t4 = time.perf_counter()
_write_image(Path(sys.argv[3]), image)
t5 = time.perf_counter()
print(json.dumps({"import_torch_s": t1 - t0, "import_codeclab_s": t2 - t1, "model_load_s": t3 - t2,
                  "first_decode_s": decode_s[0], "warm_decode_s": statistics.median(decode_s[1:] or decode_s),
                  "image_write_s": t5 - t4}))
"""


# Runs the command line inside the tree under test and exits at the call of the function that does
# the work: the whole process's time is the command's time to first work.
FIRST_WORK = """
import sys
try:
    from codeclab.formats import image_file
except ImportError:
    from codeclab import image_codec as image_file
from codeclab.cli import main

def reached(*args, **kwargs):
    raise SystemExit(0)

setattr(image_file, sys.argv[1], reached)
main(sys.argv[2:])
"""


def _env(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def _run(cmd: list[str], tree: Path, cwd: Path, check: bool = True) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one process; CPU time (user + system) is less sensitive than wall
    time to other load on the machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=_env(tree), cwd=cwd, check=check, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _prepare(tree: Path, image: Path, work: Path) -> tuple[Path, Path]:
    model, coded = work / "model.safetensors", work / "image.clab"
    subprocess.run([sys.executable, "-c", MAKE_MODEL, str(model)], env=_env(tree), cwd=work, check=True)
    subprocess.run([sys.executable, "-m", "codeclab.cli", "encode", str(image), "-m", str(model), "-o", str(coded)],
                   env=_env(tree), cwd=work, check=True, capture_output=True)
    return model, coded


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--image", type=Path, default=_common.DATA / "kodak" / "kodim01.png")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another source tree, measured side by side")
    args = _common.parse(parser, argv, image=lambda: _common.smoke_data() / "kodak" / "kodim01.png", runs=1)
    trees = {"codeclab": _common.ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {}
        for name, tree in trees.items():
            work = Path(tmp) / name
            work.mkdir()
            prepared[name] = (work, *_prepare(tree, args.image, work))
        walls = {name: {} for name in trees}
        for _ in range(args.runs):  # alternate, so that every tree meets the same background load
            for name, tree in trees.items():
                work, model, coded = prepared[name]
                decode = ["decode", str(coded), "-o", str(work / "out.png"), "-m", str(model)]
                encode = ["encode", str(args.image), "-m", str(model), "-o", str(work / "again.clab")]
                cli = [sys.executable, "-m", "codeclab.cli"]
                commands = {
                    "import_torch": [sys.executable, "-c", "import torch"],
                    "decode_command": cli + decode,
                    "encode_first_work": [sys.executable, "-c", FIRST_WORK, "encode_image", *encode],
                    "decode_first_work": [sys.executable, "-c", FIRST_WORK, "decode_image", *decode],
                    "info_file": cli + ["info", str(coded)],
                    "info_model": cli + ["info", str(model)],  # an error before model files had info
                }
                for key, cmd in commands.items():
                    wall, cpu = _run(cmd, tree, work, check=not key.startswith("info"))
                    walls[name].setdefault(key, []).append(wall)
                    walls[name].setdefault(f"{key}_cpu", []).append(cpu)
        for name, tree in trees.items():
            work, model, coded = prepared[name]
            cmd = [sys.executable, "-c", STEPS, str(coded), str(model), str(work / "steps.png"), str(args.runs + 1)]
            steps = subprocess.run(cmd, env=_env(tree), cwd=work, check=True, capture_output=True, text=True)
            result = {k: statistics.median(v) for k, v in walls[name].items()}
            result["steps"] = json.loads(steps.stdout)
            result["overhead_s"] = result["decode_command"] - result["import_torch"] - result["steps"]["warm_decode_s"]
            for command in ("encode", "decode"):
                result[f"{command}_first_work_ratio"] = result[f"{command}_first_work"] / result["import_torch"]
                result[f"{command}_first_work_cpu_ratio"] = result[f"{command}_first_work_cpu"] / result["import_torch_cpu"]
            result["file_bytes"] = coded.stat().st_size
            results[name] = result
    if args.json or args.json_file:
        _common.emit(args, results)
    else:
        for name, r in results.items():
            s = r["steps"]
            for unit, suffix in (("wall", ""), ("cpu", "_cpu")):
                print(f"{name} ({unit}): import torch {r['import_torch' + suffix]:.2f} s; first work: encode "
                      f"{r['encode_first_work' + suffix]:.2f} s ({r['encode_first_work' + suffix + '_ratio']:.2f}x), "
                      f"decode {r['decode_first_work' + suffix]:.2f} s ({r['decode_first_work' + suffix + '_ratio']:.2f}x); "
                      f"info: file {r['info_file' + suffix]:.2f} s, model {r['info_model' + suffix]:.2f} s")
            print(f"{name}: decode command {r['decode_command']:.2f} s = import torch {r['import_torch']:.2f} s + warm decode "
                  f"{s['warm_decode_s']:.2f} s + overhead {r['overhead_s']:.2f} s (target <= 1 s)")
            print(f"  steps: codeclab imports {s['import_codeclab_s']:.2f} s, model load {s['model_load_s']:.2f} s, "
                  f"first decode {s['first_decode_s']:.2f} s, image write {s['image_write_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
