"""What the benchmarks share: the project and data folders, ``--smoke`` and ``--json``.

``--json`` prints the results as one JSON object; ``--json-file PATH`` also writes it to PATH.
``--smoke`` runs a benchmark on tiny inputs, once, in seconds, to check that it still works (its
numbers mean nothing): the script's defaults are replaced by the small values it passes to
:func:`parse`, and its data folder by :func:`smoke_data` (a few small crops of scikit-image's
photographs laid out like ``../shared/data``), so no shared data or trained model is needed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CODECLAB_DATA", ROOT.parent / "shared" / "data"))
SMOKE_DIR = Path(tempfile.gettempdir()) / "codeclab-benchmark-smoke"


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with ``--smoke``, ``--json`` and ``--json-file``; its description is ``doc``'s first paragraph."""
    out = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    out.add_argument("--smoke", action="store_true", help="tiny inputs, one run, seconds: checks that the benchmark runs")
    out.add_argument("--json", action="store_true", help="print the results as one JSON object")
    out.add_argument("--json-file", type=Path, metavar="PATH", help="write the results as JSON to PATH too")
    return out


def parse(parser: argparse.ArgumentParser, argv=None, **smoke) -> argparse.Namespace:
    """Parse ``argv``; with ``--smoke`` the ``smoke`` values replace the defaults (options given still
    win; a callable is called first, e.g. to write a model file), and arguments they provide are
    no longer required."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--smoke" in argv:
        for action in parser._actions:
            if action.dest in smoke:
                action.required = False
                if not action.option_strings:  # a positional argument: may now be left out
                    action.nargs = "?" if action.nargs is None else "*"
        parser.set_defaults(**{k: v() if callable(v) else v for k, v in smoke.items()})
    return parser.parse_args(argv)


def emit(args: argparse.Namespace, results, text: str | None = None) -> None:
    """Print ``text`` (default, and with ``--json``: the results as JSON); write the JSON to ``--json-file``."""
    dump = json.dumps(results, indent=1, default=str)
    if args.json_file:
        args.json_file.write_text(dump + "\n")
    print(dump if text is None or args.json else text, flush=True)


def data_dir(smoke: bool) -> Path:
    """The shared data folder, or with ``smoke`` the tiny one."""
    return smoke_data() if smoke else DATA


def smoke_data() -> Path:
    """A tiny ``../shared/data``: ``kodak/`` (3 images, 192x176: MS-SSIM needs 161), ``train/bsds500/`` (4, 96x96, with
    a SPLITS.txt) and
    ``video/{basketballpass,vid4_city}/`` (3 frames of 64x48, a slow pan)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    root = SMOKE_DIR / "data"
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    crops = {"kodak": [(f"kodim{i + 1:02d}", p[100:276, 100:292]) for i, p in enumerate(photos[:3])],
             "train/bsds500": [(f"{i}", p[50:146, 50:146]) for i, p in enumerate(photos)]}
    for sequence, photo in (("basketballpass", photos[0]), ("vid4_city", photos[1])):
        crops[f"video/{sequence}"] = [(f"frame_{i + 1:04d}", photo[100:148, 150 + 2 * i : 214 + 2 * i]) for i in range(3)]
    for folder, images in crops.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, pixels in images:
            if not (root / folder / f"{name}.png").is_file():
                Image.fromarray(np.ascontiguousarray(pixels)).save(root / folder / f"{name}.png")
    # BSDS500's original splits, as the shared folder's SPLITS.txt gives them (data=bsds500 reads it).
    (root / "train/bsds500/SPLITS.txt").write_text("train 0.png\ntrain 1.png\ntest 2.png\nval 3.png\n")
    return root


def smoke_scratch() -> Path:
    """This process's folder for smoke-run files (smoke runs may run side by side), removed at exit."""
    folder = SMOKE_DIR / str(os.getpid())
    if not folder.is_dir():
        folder.mkdir(parents=True)
        atexit.register(shutil.rmtree, folder, True)
    return folder


def compose_codec(name: str):
    """Instantiate ``codec=<name>`` (plus ``key=value`` overrides after commas) from the train config."""
    import hydra
    from hydra import compose, initialize_config_dir

    config_name, *overrides = name.split(",")
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"codec={config_name}", *overrides])
    return hydra.utils.instantiate(cfg.codec)


def smoke_model(name: str, arithmetic: str = "integer") -> str:
    """A model file of ``codec=<name>`` at seeded random weights (smoke runs need no trained model)."""
    import torch

    from codeclab.formats.model_file import export_model

    path = smoke_scratch() / f"{name.split(',')[0]}.safetensors"
    torch.manual_seed(0)
    export_model(compose_codec(name).eval(), path, arithmetic=arithmetic)
    return str(path)


def run_cli(*args: str) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB, the kernel's ``ru_maxrss``) of ``codeclab ARGS``
    in its own process (this checkout's code), on one thread; a failure ends the benchmark with its error."""
    python_path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "import resource, sys; from codeclab.cli import main; code = main(sys.argv[1:]);"
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)", *args],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path})
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - start, int(proc.stdout.strip().splitlines()[-1]) / 2**20
