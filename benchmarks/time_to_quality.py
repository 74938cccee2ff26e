"""Time to quality: Kodak PSNR at 0.5 bpp against wall-clock training time, for CodecLab's
training and for a compressai ``examples/train.py``-style loop given the same budget.

Both loops are those of ``benchmarks/train_speed.py`` (CodecLab: bf16 transforms, channels-last,
one optimiser, images decoded once; compressai: float32, two optimisers, PIL per sample). Each
trains mbt2018-mean (``--N``/``--M``) at two lambdas that bracket 0.5 bpp (``--lambdas``) for
``--minutes`` of wall time on one thread, one run after the other, keeping a snapshot of the
weights every ``--minutes / --snapshots``. Every snapshot is measured on the first ``--images``
Kodak images with real bytes (compressai snapshots through the documented key mapping, coded by
the same coder, which gives compressai's symbols); PSNR at 0.5 bpp is interpolated linearly in
(log bpp, PSNR) between the two lambdas (extrapolated, and flagged, when 0.5 bpp lies outside).

Usage: OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py [--minutes 8] [--snapshots 4] [--out DIR] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from train_speed import SMOKE, add_arguments, codeclab_training, compressai_training  # noqa: E402


def _snapshots(train, args, lmbda: float) -> list[tuple[float, dict]]:
    """Run ``train`` for the budget; state_dicts at every snapshot time, (seconds, state)."""
    budget = 60 * args.minutes
    marks = [budget * (k + 1) / args.snapshots for k in range(args.snapshots)]
    taken: list[tuple[float, dict]] = []

    def on_step(model, elapsed):
        if len(taken) < len(marks) and elapsed >= marks[len(taken)]:
            taken.append((elapsed, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})))

    train(args, lmbda=lmbda, seconds=budget, on_step=on_step)
    return taken


def _measure(state: dict, loop: str, args, images) -> tuple[float, float]:
    from codeclab.codecs import load_compressai_state_dict, mbt2018_mean
    from codeclab.evaluation.metrics import psnr_rgb
    from codeclab.formats.image_file import decode_image, encode_image
    from codeclab.measures import bits_per_pixel

    codec = mbt2018_mean(args.N, args.M)
    if loop == "compressai":
        load_compressai_state_dict(codec, state)
    else:
        codec.load_state_dict({k: v.contiguous() for k, v in state.items()})
    codec.eval()
    codec.update_tables()
    bpp, psnr = [], []
    for image in images:
        data = encode_image(codec, image)
        bpp.append(bits_per_pixel(len(data), *image.shape[:2]))
        psnr.append(psnr_rgb(image, decode_image(data, codec)))
    return float(np.mean(bpp)), float(np.mean(psnr))


def psnr_at(points: list[tuple[float, float]], target_bpp: float = 0.5) -> tuple[float, bool]:
    """PSNR at ``target_bpp`` on the line through two (bpp, PSNR) points in (log bpp, PSNR);
    the flag says whether the target lies between them."""
    (b0, p0), (b1, p1) = sorted(points)
    if b0 == b1:  # both lambdas at the same rate (a barely trained model): no line through them
        return math.nan, False
    t = (math.log(target_bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
    return p0 + t * (p1 - p0), 0.0 <= t <= 1.0


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--minutes", type=float, default=8)
    parser.add_argument("--snapshots", type=int, default=4)
    parser.add_argument("--lambdas", type=float, nargs=2, default=[0.0035, 0.013])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--out", type=Path, default=_common.ROOT / "reports" / "time_to_quality")
    add_arguments(parser)
    parser.set_defaults(N=64, M=96, lr=3e-4)
    args = _common.parse(parser, argv, minutes=0.01, snapshots=1, images=1, out=lambda: _common.smoke_scratch() / "time_to_quality", **SMOKE)
    torch.set_num_threads(args.threads)
    from codeclab.data.images import list_images, read_image

    images = [read_image(p, notice=None) for p in list_images(_common.data_dir(args.smoke) / "kodak")[: args.images]]
    results: dict = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"}}
    for loop, train in (("codeclab", codeclab_training), ("compressai", compressai_training)):
        runs = {lmbda: _snapshots(train, args, lmbda) for lmbda in args.lambdas}
        curve = []
        for k in range(min(len(r) for r in runs.values())):
            points = [_measure(runs[lmbda][k][1], loop, args, images) for lmbda in args.lambdas]
            psnr, inside = psnr_at(points)
            seconds = float(np.mean([runs[lmbda][k][0] for lmbda in args.lambdas]))
            curve.append({"seconds": seconds, "points": points, "psnr_at_0.5bpp": psnr, "interpolated": inside})
        results[loop] = curve
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "time_to_quality.json").write_text(json.dumps(results, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for loop in ("codeclab", "compressai"):
        ax.plot([p["seconds"] / 60 for p in results[loop]], [p["psnr_at_0.5bpp"] for p in results[loop]], "o-", label=loop)
    ax.set_xlabel("training wall time (min, one CPU thread)")
    ax.set_ylabel("Kodak RGB PSNR at 0.5 bpp (dB)")
    ax.set_title(f"mbt2018-mean {args.N}/{args.M}, first {args.images} Kodak images")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "time_to_quality.png", dpi=120)
    _common.emit(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
