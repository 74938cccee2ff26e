"""QVRF's official 8-level ladder against CodecLab's 64-level default, at CPU scale (issue 29).

Two variable-rate mbt2018-mean models of the width of ``--codec`` (default ``mbt2018_mean_small``,
N/M = 48/64), each trained for ``--steps`` steps from scratch on BSDS500 128-px crops in batches of
8, float32, one thread, with a random rate level per sample:

* ``default``: CodecLab's ladder (``codec=mbt2018_mean_vr``): 64 levels, lambda log-spaced over
  [0.0018, 0.0483], gains from the sqrt rule on the 256-entry scale table's grid;
* ``official``: bytedance/QRAF's ladder (``codec=mbt2018_mean_qvrf``): 8 levels, lambda 0.0018 ...
  0.18, initial gains sqrt(lambda / 0.0018), after its stage 1 (the first ``--stage1`` of the
  steps at the largest lambda with gain 1, ``module.single_rate_steps``).

Both are measured on Kodak with real bytes (``eval.py``, 8 levels each: the whole official ladder,
8 evenly spaced levels of the default one). The result is the BD-rate of the official ladder
against the default over the rates both reach (cubic and PCHIP, RGB PSNR), and the official
curve's PSNR at each default point. Finished models in ``--out`` are reused.

Usage: OMP_NUM_THREADS=1 python benchmarks/qvrf_ladders.py [--steps 3000] [--out DIR] [--json] [--smoke]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import ROOT  # noqa: E402
from variable_rate_cost import report, train  # noqa: E402

OFFICIAL_LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18]  # bytedance/QRAF
LADDERS = {
    "default": ["+codec.rate_levels=64", "+codec.lmbda_min=0.0018", "+codec.lmbda_max=0.0483", "+codec.scale_table_levels=256"],
    "official": ["+codec.rate_levels=8", f"+codec.lmbdas=[{','.join(map(str, OFFICIAL_LAMBDAS))}]",
                 "+codec.lmbda_min=0.0018", "+codec.lmbda_max=0.18", "+codec.scale_table_levels=256"],
}


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--stage1", type=float, default=0.25, help="the official ladder's single-rate share of the steps")
    parser.add_argument("--codec", default="mbt2018_mean_small")
    parser.add_argument("--max-images", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "qvrf_ladders", help="finished models here are reused")
    args = _common.parse(parser, argv, steps=2, codec="tiny", max_images=1,
                         out=lambda: _common.smoke_scratch() / "qvrf_ladders")
    data = _common.data_dir(args.smoke)
    seconds, models = {}, {}
    for name, rate in LADDERS.items():
        run = args.out / name
        stage1 = [f"module.single_rate_steps={int(args.steps * args.stage1)}"] if name == "official" else []
        if not (run / "model.safetensors").is_file():
            seconds[name] = train(run, args.steps, args.codec, rate + stage1, data, 128 if not args.smoke else 64,
                                  transform_dtype="null")
        models[name] = run / "model.safetensors"
    report(args, data, {name: [path] for name, path in models.items()}, 8,
           {"codec": args.codec, "steps_per_model": args.steps, "official_stage1_steps": int(args.steps * args.stage1)},
           seconds, "QVRF's official ladder vs CodecLab's 64-level default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
