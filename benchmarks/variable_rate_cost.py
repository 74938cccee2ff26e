"""BD-rate cost of one variable-rate model against separately trained fixed-lambda models.

At a reduced scale that fits a 2-core CPU (issue 12 allows it; the scale is stated in the
output): ``--codec`` (default ``mbt2018_mean_small``, N/M = 48/64), ``--lambdas`` (default four,
log-spaced over [0.0018, 0.0483]), ``--steps`` steps for every model, BSDS500 128-px crops,
batch 8, bf16 transforms. Each fixed model trains at one lambda; the variable-rate model has
one level per lambda (the same values) and draws a level per sample. Every model gets the
same number of steps, so the variable-rate model sees each lambda a quarter as often.

Both curves are measured on Kodak with real bytes (``eval.py``); the BD-rate of the
variable-rate curve against the fixed ladder (cubic and PCHIP, RGB PSNR) is the cost
(target: at most 3%). Everything lands in ``--out``; ``--json`` prints the summary.

Usage: OMP_NUM_THREADS=1 python benchmarks/variable_rate_cost.py [--steps 2000] [--out DIR] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import ROOT  # noqa: E402


def train(out: Path, steps: int, codec: str, extra: list[str], data: Path, crop: int,
          transform_dtype: str = "bfloat16") -> float:
    """Train ``codec`` with ``train.py`` into ``out``; returns the wall seconds."""
    cmd = [
        sys.executable, "train.py", f"codec={codec}", "data=bsds500", f"paths.data_dir={data}", "data.preload=true",
        f"data.patch_size={crop}", "data.batch_size=8", "data.num_workers=0", "data.val_max_images=2", f"trainer.max_steps={steps}",
        "trainer.check_val_every_n_epoch=1000", "logger=csv", f"module.transform_dtype={transform_dtype}", "module.channels_last=true",
        "optim.optimizer.lr=3e-4", f"hydra.run.dir={out}", *extra,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "disabled"})
    return time.perf_counter() - start


def pointwise(anchor_bpp, anchor_psnr, test_bpp, test_psnr) -> list[dict]:
    """For each anchor point inside the test curve's rate range: the test curve's PSNR at that bpp
    (linear in log bpp between its neighbours); a comparison that needs no monotonic anchor."""
    import numpy as np

    order = np.argsort(test_bpp)
    log_b, q = np.log(np.asarray(test_bpp)[order]), np.asarray(test_psnr)[order]
    out = []
    for b, p in zip(anchor_bpp, anchor_psnr):
        if log_b[0] <= math.log(b) <= log_b[-1]:
            at = float(np.interp(math.log(b), log_b, q))
            out.append({"bpp": float(b), "anchor_psnr": float(p), "test_psnr": at, "gain_db": at - float(p)})
    return out


def report(args, data: Path, ladders: dict[str, list[Path]], rate_points: int, scale: dict, seconds: dict, what: str) -> None:
    """Measure ``ladders`` (name -> model files; the first is the anchor) on Kodak with ``eval.py``
    (``rate_points`` levels of a variable-rate model), then write and print the second curve's
    BD-rate against the first (cubic and PCHIP, RGB PSNR) and its PSNR at each anchor point."""
    from codeclab.evaluation.bd_rate import bd
    from codeclab.evaluation.curves import PSNR, read_curve

    learned = "learned=[" + ",".join(f"{{name:{n},models:[{','.join(map(str, m))}]}}" for n, m in ladders.items()) + "]"
    subprocess.run([sys.executable, "eval.py", "data=kodak", f"paths.data_dir={data}", "classic=none", learned,
                    f"rate_points={rate_points}", f"max_images={args.max_images}", "progress=false",
                    f"hydra.run.dir={args.out / 'eval'}"], cwd=ROOT, check=True, capture_output=True)
    curves = {c.name: c for c in (read_curve(p) for p in (args.out / "eval" / "curves").glob("*.json"))}
    anchor, test = (curves[name] for name in ladders)
    summary = {"scale": {**scale, "kodak_images": args.max_images}, "train_seconds": seconds,
               **{name: {"bpp": list(c.bpp), "psnr": list(c.quality(PSNR))} for name, c in zip(ladders, (anchor, test))},
               "pointwise": pointwise(anchor.bpp, anchor.quality(PSNR), test.bpp, test.quality(PSNR)), "warnings": []}
    for method in ("cubic", "pchip"):
        result = bd(anchor.bpp, anchor.quality(PSNR), test.bpp, test.quality(PSNR), method)
        summary[f"bd_rate_{method}"] = result.bd_rate if result.ok else None
        summary["warnings"].extend(result.warnings)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _common.emit(args, summary, f"BD-rate of {what}: {summary['bd_rate_cubic']} % (cubic), {summary['bd_rate_pchip']} % (PCHIP)")


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--codec", default="mbt2018_mean_small")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0018, 0.0054, 0.0161, 0.0483])
    parser.add_argument("--max-images", type=int, default=24)
    parser.add_argument("--crop", type=int, default=128, help="training crop")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "variable_rate_cost", help="finished models here are reused")
    # A smoke run trains afresh (its own folder): reused models would time nothing.
    args = _common.parse(parser, argv, steps=1, codec="tiny", lambdas=[0.0018, 0.0483], max_images=1, crop=64,
                         out=lambda: _common.smoke_scratch() / "variable_rate_cost")
    data = _common.data_dir(args.smoke)
    lambdas = sorted(args.lambdas)
    ratio = math.exp(math.log(lambdas[-1] / lambdas[0]) / (len(lambdas) - 1))
    if any(not math.isclose(b / a, ratio, rel_tol=1e-2) for a, b in zip(lambdas, lambdas[1:])):
        raise SystemExit("--lambdas must be log-spaced (the variable-rate model's levels are)")
    seconds, fixed = {}, []
    for lmbda in lambdas:
        run = args.out / f"fixed_{lmbda}"
        if not (run / "model.safetensors").is_file():
            seconds[f"fixed_{lmbda}"] = train(run, args.steps, args.codec, [f"lmbda={lmbda}"], data, args.crop)
        fixed.append(run / "model.safetensors")
    run = args.out / "variable"
    if not (run / "model.safetensors").is_file():
        rate = [f"+codec.rate_levels={len(lambdas)}", f"+codec.lmbda_min={lambdas[0]}", f"+codec.lmbda_max={lambdas[-1]}",
                "+codec.scale_table_levels=256"]
        seconds["variable"] = train(run, args.steps, args.codec, rate, data, args.crop)
    report(args, data, {"fixed": fixed, "variable": [run / "model.safetensors"]}, len(lambdas),
           {"codec": args.codec, "steps_per_model": args.steps, "lambdas": lambdas}, seconds,
           "the variable-rate model vs the fixed ladder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
