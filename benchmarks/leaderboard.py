"""The entropy-model leaderboard (issue 28): every image entropy model on one transform, one budget.

Each entry is an entropy model (``configs/codec/entropy/<name>.yaml``) on the one transform of
``codec=leaderboard`` (mbt2018-mean's convolution + GDN stacks at the budget's N/M), trained with
``train.py``'s code (``experiment=leaderboard leaderboard=<budget>``) at each of the budget's
lambdas for a fixed wall-clock time (``trainer.max_time``), then evaluated on Kodak through the
project's evaluation code (:func:`codeclab.evaluation.runner.evaluate`: real files through the
container, 8-bit decoded images). The report gives per entry: BD-rate (RGB PSNR, cubic and PCHIP)
against the mean-scale hyperprior entry, Kodak bpp/PSNR per rate point, the median encode and
decode time per image, parameters (whole codec and entropy model) and kMAC per pixel.

Variable rate (``leaderboard.variable_rate``): an entry whose entropy model has QVRF's gain bank
trains one model for the whole entry's time (``len(lambdas) x time_per_model``), with one rate
level per lambda (``rate_levels = len(lambdas)``, ``lmbdas = lambdas``: QVRF's explicit ladder),
evaluated at every level; the others (``leaderboard.fixed_rate_entries``: the factorized prior,
which has no gain bank) train one model per lambda.

Resumable: every model trains in ``OUT/runs/<entry>/lmbda_<lambda>/`` (``variable/``); a model whose
``model.safetensors`` exists is finished and skipped, one with ``checkpoints/last.ckpt`` resumes
from it (Lightning restores the time already spent, so the budget holds across interruptions);
evaluated points are cached in ``OUT/eval_cache``.

kMAC/pixel: :class:`torch.utils.flop_counter.FlopCounterMode` over ``Codec.forward`` of one
256x256 image in eval mode (the parallel pass every model trains with: ``g_a``, ``h_a``, ``h_s``,
the context networks, ``g_s``; for the serial autoregressive models the same multiply-adds as
decoding), counting convolutions, matrix products and attention; element-wise work (GDN's square
root, activations, softmax, the entropy coder) is not counted. MAC = FLOP / 2.

Usage::

    OMP_NUM_THREADS=1 nohup python3 benchmarks/leaderboard.py --budget cpu > logs/leaderboard_cpu.log 2>&1 &
    python3 benchmarks/leaderboard.py --budget gpu --no-eval --out $OUT/leaderboard      # train on a GPU
    python3 benchmarks/leaderboard.py --budget gpu --no-train --out DIR                  # evaluate here
    python3 benchmarks/leaderboard.py --budget smoke --entries hyperprior,checkerboard --out /tmp/lb
    python3 benchmarks/leaderboard.py --budget cpu --images 8 --out reports/leaderboard/cpu --report-only
    python3 benchmarks/leaderboard.py --smoke --json   # seconds: 2 entries, N/M = 16/40, 2 steps, one 64x64 image
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT
CONFIGS = ROOT / "configs"
KMAC_SIZE = 256
# --smoke: the whole pipeline in seconds (the tests; nothing it measures means anything).
SMOKE_ENTRIES = "factorized,hyperprior"
SMOKE_OVERRIDES = ["data=default", "data.patch_size=64", "data.batch_size=2", "data.samples_per_epoch=4",
                   "trainer.max_steps=2", "trainer.enable_progress_bar=false", "logger=csv", "codec.transform.N=16",
                   "codec.transform.M=40", "leaderboard.lambdas=[0.002,0.02]"]

# Published Kodak results (MSE models; RGB PSNR), the entropy models' own papers or compressai's
# pretrained models, each with its own transform. Curves from ``reference_rd`` where one exists
# (BD-rate computed here, against CompressAI's VTM and its mbt2018-mean); otherwise the paper's
# quoted BD-rate against VTM.
PUBLISHED = {
    "factorized": ("compressai bmshj2018-factorized", "compressai/kodak/compressai-bmshj2018-factorized_mse_cuda.json", None),
    "scale_hyperprior": ("compressai bmshj2018-hyperprior", "compressai/kodak/compressai-bmshj2018-hyperprior_mse_cuda.json", None),
    "hyperprior": ("compressai mbt2018-mean", "compressai/kodak/compressai-mbt2018-mean_mse_cuda.json", None),
    "autoregressive": ("compressai mbt2018", "compressai/kodak/compressai-mbt2018_mse_cuda.json", None),
    "autoregressive_integer": ("Minnen et al. 2018 (paper)", "compressai/kodak/paper-mbt2018.json", None),
    "checkerboard": ("He et al. 2021 on Minnen 2018 (paper)", "compressai/kodak/paper-minnen2018-checkerboard_mse.json", None),
    "charm": ("Minnen & Singh 2020, cc10 (paper)", "compressai/kodak/paper-minnen2020-cc10_mse.json", None),
    "elic": ("ELIC (paper)", "compressai/kodak/paper-elic2022_mse.json", None),
    "mixture": ("compressai cheng2020-anchor (1 Gaussian)", "compressai/kodak/compressai-cheng2020-anchor_mse_cuda.json", None),
    "acgc": ("S2LIC (paper, vs VTM)", None, -8.87),
    "mlicpp": ("MLIC++ (released points)", "mlic/kodak/mlicplusplus_mse.json", None),
    "mlicv2": ("MLICv2 (paper, vs VTM)", None, -16.2),
}
VTM = "compressai/kodak/vtm.json"
MEAN_SCALE = "compressai/kodak/compressai-mbt2018-mean_mse_cuda.json"


def compose_run(budget: str, entry: str, lmbda: float, run_dir: Path, data_dir: Path, extra=()):
    """The ``train.py`` configuration of one leaderboard model."""
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    overrides = ["experiment=leaderboard", f"leaderboard={budget}", f"codec/entropy={entry}", f"lmbda={lmbda}",
                 f"paths.data_dir={data_dir}", f"paths.output_dir={run_dir}", *extra]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides)


def budget_config(budget: str, data_dir: Path, extra=()):
    """The composed configuration of the budget (its ``leaderboard`` node, widths, trainer)."""
    return compose_run(budget, "hyperprior", 0.0067, Path("."), data_dir, extra)


def seconds_of(duration: str) -> int:
    """``DD:HH:MM:SS`` in seconds."""
    days, hours, minutes, seconds = (int(v) for v in str(duration).split(":"))
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def duration_of(seconds: int) -> str:
    """Seconds as Lightning's ``DD:HH:MM:SS``."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{seconds:02d}"


def entry_models(board, entry: str) -> list[dict]:
    """The models an entry trains: ``{"name", "lmbda", "levels", "overrides"}`` each.

    A variable-rate entry: one model (``variable``), its levels the budget's lambdas, trained for
    the time of all of them; otherwise one model per lambda (``lmbda_<lambda>``), no levels."""
    lambdas = [float(v) for v in board.lambdas]
    if board.get("variable_rate") and entry not in board.fixed_rate_entries:
        ladder = ",".join(f"{v:g}" for v in lambdas)
        time = duration_of(seconds_of(board.time_per_model) * len(lambdas))
        return [{"name": "variable", "lmbda": lambdas[-1], "levels": list(range(len(lambdas))),
                 "overrides": [f"+codec.entropy.rate_levels={len(lambdas)}", f"+codec.entropy.lmbdas=[{ladder}]",
                               f"trainer.max_time={time}"]}]
    return [{"name": f"lmbda_{v:g}", "lmbda": v, "levels": None, "overrides": []} for v in lambdas]


def run_dir(out: Path, entry: str, model: dict) -> Path:
    return out / "runs" / entry / model["name"]


def _steps(run: Path) -> int | None:
    """The last training step the CSV logger recorded (over every resumed version)."""
    steps = []
    for path in run.glob("csv/version_*/metrics.csv"):
        with open(path, newline="") as f:
            steps += [int(row["step"]) for row in csv.DictReader(f) if row.get("step")]
    return max(steps) + 1 if steps else None


def train_entry(budget: str, entry: str, models: list[dict], out: Path, data_dir: Path, extra=(), log=print) -> list[dict]:
    """Train (or resume, or skip) the models of one entry (:func:`entry_models`); returns one
    record per model."""
    from codeclab.training.run import train

    records = []
    for spec in models:
        lmbda = spec["lmbda"]
        run = run_dir(out, entry, spec)
        model = run / "model.safetensors"
        info_path = run / "train_info.json"
        if not model.is_file():
            last = run / "checkpoints" / "last.ckpt"
            resume = [f"ckpt_path={last}"] if last.is_file() else []
            log(f"leaderboard: {entry} {spec['name']}: {'resuming' if resume else 'training'} -> {run}")
            run.mkdir(parents=True, exist_ok=True)
            previous = json.loads(info_path.read_text())["seconds"] if info_path.is_file() else 0.0
            info_path.write_text(json.dumps({"seconds": previous, "finished": False}))
            cfg = compose_run(budget, entry, lmbda, run, data_dir, [*spec["overrides"], *extra, *resume])
            start = time.perf_counter()
            train(cfg)
            seconds = previous + time.perf_counter() - start
            info_path.write_text(json.dumps({"seconds": seconds, "finished": True, "steps": _steps(run)}))
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        records.append({"lmbda": lmbda, "levels": spec["levels"], "model": str(model), "train_seconds": info.get("seconds"),
                        "steps": info.get("steps", _steps(run))})
    return records


def complexity(cfg) -> dict:
    """Parameters and kMAC/pixel of the entry's codec (see the module docstring)."""
    import torch
    from hydra.utils import instantiate
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    codec = instantiate(cfg.codec).eval()
    x = torch.rand(1, 3, KMAC_SIZE, KMAC_SIZE)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        codec(x)
    flops = counter.get_flop_counts()
    total = counter.get_total_flops()
    entropy = sum(sum(ops.values()) for name, ops in flops.items() if name.endswith("entropy_model") and name.count(".") == 1)
    pixels = KMAC_SIZE * KMAC_SIZE
    return {
        "params": sum(p.numel() for p in codec.parameters()),
        "entropy_params": sum(p.numel() for p in codec.entropy_model.parameters()),
        "kmac_per_pixel": total / 2 / pixels / 1e3,
        "entropy_kmac_per_pixel": entropy / 2 / pixels / 1e3,
    }


def evaluate_entry(entry: str, trained: list[dict], images, cache_dir: Path) -> dict:
    """Kodak points of one entry's models (every level of a variable-rate one) through the
    project's evaluation code; one rate point per lambda."""
    from codeclab.evaluation.runner import LearnedCurve, PointCache, evaluate

    levels = {t["model"]: t["levels"] for t in trained if t.get("levels")}
    curve = LearnedCurve(entry, [t["model"] for t in trained], levels=levels)
    points = evaluate(images, learned=[curve], cache=PointCache(cache_dir), workers=1, y_psnr=False, progress=False)
    rates = []
    for setting in curve.settings():
        mine = [p for p in points if p["setting"] == setting]
        rates.append({"model": setting, "bpp": statistics.fmean(p["bpp"] for p in mine),
                      "psnr": statistics.fmean(p["psnr-rgb"] for p in mine)})
    return {"rates": rates,
            "encode_s": statistics.median(p["encoding_time"] for p in points),
            "decode_s": statistics.median(p["decoding_time"] for p in points),
            "points": len(points)}


def bd_against(anchor: dict, test: dict) -> dict:
    from codeclab.evaluation.bd_rate import bd

    results = {method: bd([r["bpp"] for r in anchor["rates"]], [r["psnr"] for r in anchor["rates"]],
                          [r["bpp"] for r in test["rates"]], [r["psnr"] for r in test["rates"]], method)
               for method in ("cubic", "pchip")}
    out = {method: res.bd_rate for method, res in results.items()}
    out["warnings"] = list(dict.fromkeys(w for res in results.values() for w in res.warnings))
    # BD-PSNR (PCHIP) over the common rate range: a number where the quality ranges do not overlap
    # (a model worse at every rate has no BD-rate).
    out["psnr"] = results["pchip"].bd_psnr
    return out


def published_gains(data_dir: Path) -> dict:
    """BD-rate of each entry's published Kodak results against VTM and against mbt2018-mean."""
    from codeclab.evaluation.bd_rate import bd
    from codeclab.evaluation.curves import PSNR, read_curve

    root = data_dir / "reference_rd"
    out = {}

    def curve(rel):
        c = read_curve(root / rel)
        return c.bpp, c.quality(PSNR)

    have = (root / VTM).is_file() and (root / MEAN_SCALE).is_file()
    vtm, mean_scale = (curve(VTM), curve(MEAN_SCALE)) if have else (None, None)
    for entry, (source, rel, quoted) in PUBLISHED.items():
        row = {"source": source, "vs_vtm": quoted, "vs_mean_scale": None, "computed": False}
        if rel and have and (root / rel).is_file():
            test = curve(rel)
            row["vs_vtm"] = bd(*vtm, *test, "pchip").bd_rate
            row["vs_mean_scale"] = bd(*mean_scale, *test, "pchip").bd_rate
            row["computed"] = True
        out[entry] = row
    base = out.get("hyperprior", {}).get("vs_vtm")
    for row in out.values():  # quoted numbers: relative to mbt2018-mean through the ratio of rates
        if row["vs_mean_scale"] is None and row["vs_vtm"] is not None and base is not None:
            row["vs_mean_scale"] = 100 * ((1 + row["vs_vtm"] / 100) / (1 + base / 100) - 1)
    return out


def _fmt(value, spec: str = ".1f", none: str = "n/a") -> str:
    return none if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def write_report(out: Path, summary: dict) -> None:
    from codeclab.files import write_atomically

    rows = summary["entries"]
    lines = [f"# Entropy-model leaderboard ({summary['budget']} budget)", "",
             f"Command: `{summary['command']}`", "",
             f"One transform (cnn, N/M = {summary['N']}/{summary['M']}), lambdas {summary['lambdas']}, "
             f"{summary['time_per_model']} of training per lambda ({summary['rate_models']}); Kodak ({len(summary['images'])} images: "
             f"{', '.join(summary['images'])}); {summary['machine']}; {summary['threads']} thread(s).", "",
             f"BD-rate: RGB PSNR against `{summary['anchor']}` (negative: fewer bits); BD-PSNR: PCHIP, dB over the "
             "common rate range (positive: better). Times: median per image "
             f"over every rate point. kMAC/px: forward pass of a {KMAC_SIZE}x{KMAC_SIZE} image (MAC = FLOP/2).", "",
             "| entry | BD-rate cubic | BD-rate PCHIP | BD-PSNR dB | published vs mean-scale | published vs VTM | bpp (per lambda) "
             "| PSNR (per lambda) | encode s | decode s | params | entropy params | kMAC/px | entropy kMAC/px "
             "| steps (per model) | train s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name, row in rows.items():
        ev, bd_row, pub = row.get("eval"), row.get("bd_rate") or {}, row.get("published") or {}
        bpp = " / ".join(_fmt(r["bpp"], ".3f") for r in ev["rates"]) if ev else "n/a"
        psnr = " / ".join(_fmt(r["psnr"], ".2f") for r in ev["rates"]) if ev else "n/a"
        steps = " / ".join(_fmt(t.get("steps"), "d") for t in row["train"])
        seconds = [t.get("train_seconds") for t in row["train"]]
        seconds = sum(seconds) if None not in seconds else None
        lines.append(
            f"| {name} | {_fmt(bd_row.get('cubic'))} | {_fmt(bd_row.get('pchip'))} | {_fmt(bd_row.get('psnr'), '+.2f')} "
            f"| {_fmt(pub.get('vs_mean_scale'), '+.1f')} "
            f"| {_fmt(pub.get('vs_vtm'), '+.1f')} | {bpp} | {psnr} | {_fmt(ev and ev['encode_s'], '.3f')} | {_fmt(ev and ev['decode_s'], '.3f')} "
            f"| {row['params']:,} | {row['entropy_params']:,} | {row['kmac_per_pixel']:.1f} "
            f"| {row['entropy_kmac_per_pixel']:.1f} | {steps} | {_fmt(seconds, '.0f')} |")
    warnings = {name: row["bd_rate"]["warnings"] for name, row in rows.items() if (row.get("bd_rate") or {}).get("warnings")}
    if warnings:
        lines += ["", "BD-rate warnings (no number where the curves do not allow one):", ""]
        lines += [f"* {name}: {'; '.join(w)}" for name, w in warnings.items()]
    for name, text in (("report.md", "\n".join(lines) + "\n"), ("report.json", json.dumps(summary, indent=2) + "\n")):
        write_atomically(out / name, lambda tmp, text=text: Path(tmp).write_text(text))


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--budget", default="cpu", help="configs/leaderboard/<budget>.yaml: cpu, gpu, smoke")
    parser.add_argument("--entries", default=None, help="comma-separated entropy models (default: the budget's)")
    parser.add_argument("--out", type=Path, default=None, help="default: logs/leaderboard/<budget>")
    parser.add_argument("--data", type=Path, default=_common.DATA, help="the shared data folder (kodak/, train/bsds500/)")
    parser.add_argument("--kodak", type=Path, default=None, help="the evaluation images (default: DATA/kodak)")
    parser.add_argument("--images", type=int, default=None, help="Kodak images (default: the budget's; all 24 if null)")
    parser.add_argument("--no-train", dest="train", action="store_false", help="evaluate finished models only")
    parser.add_argument("--no-eval", dest="eval", action="store_false", help="train only")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild report.md and report.json from OUT/entries/ (runs split over sessions); trains, "
                             "evaluates and rewrites no entry")
    parser.add_argument("overrides", nargs="*", help="train.py overrides for every model (e.g. data.batch_size=4)")
    args = parser.parse_args(argv)
    if args.smoke:
        import tempfile

        import numpy as np
        from PIL import Image

        scratch = Path(tempfile.mkdtemp(prefix="leaderboard_smoke_"))
        args.kodak = scratch / "kodak"
        args.kodak.mkdir()
        pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(args.kodak / "kodim01.png")
        args.budget, args.entries = "smoke", args.entries or SMOKE_ENTRIES
        args.out = args.out or scratch / "board"
        args.overrides = [*SMOKE_OVERRIDES, *args.overrides]
    import torch

    from codeclab.training.run import quiet_third_parties

    quiet_third_parties()
    out = (args.out or ROOT / "logs" / "leaderboard" / args.budget).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = budget_config(args.budget, args.data, args.overrides)
    board = cfg.leaderboard
    entries = [] if args.report_only else args.entries.split(",") if args.entries else list(board.entries)
    lambdas = [float(v) for v in board.lambdas]
    anchor = board.anchor
    summary = {
        "budget": args.budget, "command": " ".join(["python3 benchmarks/leaderboard.py", *(argv or sys.argv[1:])]),
        "N": int(cfg.codec.transform.N), "M": int(cfg.codec.transform.M), "lambdas": lambdas,
        "time_per_model": str(board.time_per_model), "anchor": anchor,
        "rate_models": ("one variable-rate model per entry, one level per lambda, except "
                        + ", ".join(board.fixed_rate_entries) + ": one model per lambda")
        if board.get("variable_rate") else "one model per lambda", "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores", "entries": {}, "images": [],
    }
    published = published_gains(args.data)
    images = []
    if args.eval:
        from codeclab.evaluation.run import load_images

        count = args.images if args.images is not None else board.eval_images
        images = load_images(str(args.kodak or args.data / "kodak"), None if count is None else int(count))
        summary["images"] = [i.name for i in images]
    for entry in entries:
        extra = [*(board.entry_overrides or {}).get(entry, []), *args.overrides]
        models = entry_models(board, entry)
        if args.train:
            train = train_entry(args.budget, entry, models, out, args.data, extra)
        else:
            train = [{"lmbda": m["lmbda"], "levels": m["levels"], "model": str(run_dir(out, entry, m) / "model.safetensors")}
                     for m in models]
        row = {"train": train, "overrides": extra, "published": published.get(entry),
               **complexity(compose_run(args.budget, entry, lambdas[0], out, args.data, extra))}
        if args.eval and all(Path(t["model"]).is_file() for t in train):
            row["eval"] = evaluate_entry(entry, train, images, out / "eval_cache")
        (out / "entries").mkdir(exist_ok=True)
        (out / "entries" / f"{entry}.json").write_text(json.dumps(row, indent=2) + "\n")
        print(f"leaderboard: {entry} done", flush=True)
    # The report holds every entry of the budget this folder has results for (runs split over
    # sessions with --entries add up), in the budget's order.
    for entry in [*board.entries, *entries]:
        path = out / "entries" / f"{entry}.json"
        if entry not in summary["entries"] and path.is_file():
            summary["entries"][entry] = json.loads(path.read_text())
    base = summary["entries"].get(anchor, {}).get("eval")
    for row in summary["entries"].values():
        if base and row.get("eval"):
            row["bd_rate"] = bd_against(base, row["eval"])
    write_report(out, summary)
    _common.emit(args, summary, f"leaderboard: report in {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
