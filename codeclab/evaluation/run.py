"""``python eval.py``: build images, codecs and anchors from the Hydra config, measure, report."""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from codeclab.errors import CodecLabError
from codeclab.evaluation.classic import PostFiltered
from codeclab.evaluation.curves import read_curve
from codeclab.evaluation.report import log_wandb, write_report
from codeclab.evaluation.runner import LearnedCurve, PointCache, EvalImage, evaluate


def load_images(test_dir: str | None, max_images: int | None = None, splits=None) -> list[EvalImage]:
    """The images of ``test_dir`` (any folder of images; with ``splits``, those its ``SPLITS.txt``
    puts in them), or the embedded ones when ``None``."""
    from codeclab.data.images import default_test_images, list_images, read_image

    if test_dir is None:
        items = default_test_images()
    else:
        folder = Path(test_dir)
        if not folder.is_dir():
            raise CodecLabError(f"test image folder {folder} does not exist (set data.test_dir "
                                "or paths.data_dir / CODECLAB_DATA)")
        items = [(p.stem, read_image(p)) for p in list_images(folder, splits)[:max_images]]
    return [EvalImage(name, pixels) for name, pixels in items[:max_images]]


def _curve_name(models: list[str]) -> str:
    """Default learned-curve name: the codec id stored in the model file, else the file stem."""
    try:
        from codeclab.formats.model_file import read_metadata

        return str(read_metadata(models[0])["codec"])
    except (CodecLabError, KeyError, OSError, ImportError):
        return Path(models[0]).stem


def swept_levels(rate_levels: int, points: int) -> list[int]:
    """``points`` levels spread evenly over ``[0, rate_levels)``, both ends included."""
    points = max(2, min(points, rate_levels))
    return sorted({round(i * (rate_levels - 1) / (points - 1)) for i in range(points)})


def _rate_levels(model: str) -> int:
    import json

    from codeclab.formats.model_file import read_metadata

    return int(json.loads(read_metadata(model)["config"]).get("rate_levels", 0))


def learned_curves(cfg: DictConfig) -> list[LearnedCurve]:
    """``model=PATH`` (one point, or one curve of ``rate_points`` levels for a variable-rate model),
    ``models=[P1,...]`` (a ladder) and ``learned=[{name,models,coder,refine}]`` (several ladders) all
    become ``LearnedCurve``s; ``refine=N`` codes with N SGA iterations per image."""
    specs = [dict(s) for s in cfg.get("learned") or []]
    ladder = ([cfg.model] if cfg.get("model") else []) + list(cfg.get("models") or [])
    if ladder:
        specs.insert(0, {"name": cfg.get("name"), "models": ladder, "coder": cfg.get("coder"), "refine": cfg.get("refine")})
    curves = []
    for spec in specs:
        models = [str(Path(m).expanduser()) for m in spec["models"]]
        for m in models:
            if not Path(m).is_file():
                raise CodecLabError(f"model file {m} does not exist")
        levels = {m: swept_levels(n, cfg.get("rate_points", 8)) for m in models if (n := _rate_levels(m))}
        if levels and len(levels) != len(models):
            raise CodecLabError("a curve mixes fixed-rate and variable-rate models; give each its own curve")
        curves.append(LearnedCurve(spec.get("name") or _curve_name(models), models, spec.get("coder"), levels=levels,
                                   refine=int(spec.get("refine") or 0)))
    return curves


def with_postfilter(path: str, classic: list, learned: list[LearnedCurve]) -> tuple[list, list[LearnedCurve]]:
    """Every curve twice: as it is and through the post-filter of the network file ``path``
    (named ``<curve>+<post-filter>``)."""
    from codeclab.formats.network_file import read_network_name

    name = read_network_name(path, "postfilter")
    filtered_classic = [PostFiltered(f"{c.name}+{name}", codec=c, postfilter=path) for c in classic]
    filtered_learned = [dataclasses.replace(c, name=f"{c.name}+{name}", postfilter=path, load=None, encode=None, decode=None)
                        for c in learned]
    return classic + filtered_classic, learned + filtered_learned


def load_anchors(spec: DictConfig | None, log=print) -> list:
    """Published curves named in ``anchors.curves`` ({name: {path, metric}}); missing files are
    skipped with a notice (the shared data folder is not everywhere)."""
    out = []
    for name, entry in (spec or {}).items():
        if entry is None:
            continue
        path = Path(entry.path)
        if not path.is_file():
            log(f"notice: anchor {name}: {path} not found, skipped")
            continue
        curve = read_curve(path, name=name, metric=entry.get("metric"))
        curve.kind, curve.source = "anchor", _display_path(str(path))
        out.append(curve)
    return out


def run_eval(cfg: DictConfig) -> dict:
    """Measure and write the report into the Hydra run directory; returns the report dict."""
    out_dir = Path(cfg.paths.output_dir)
    t0 = time.perf_counter()
    for key, lowest in (("rate_points", 2), ("max_images", 1)):
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or value < lowest):
            raise CodecLabError(f"{key}={value} must be an integer >= {lowest}" + (" or null" if key == "max_images" else ""))
    images = load_images(cfg.test_dir, cfg.get("max_images"), cfg.get("test_splits"))
    classic = [instantiate(c, _convert_="all") for c in (cfg.classic.codecs or {}).values()
               if c is not None]
    learned = learned_curves(cfg)
    if cfg.get("postfilter"):
        classic, learned = with_postfilter(cfg.postfilter, classic, learned)
    anchors = load_anchors(cfg.anchors.get("curves"))
    print(f"eval: {len(images)} images, {len(learned)} learned and {len(classic)} classic "
          f"curves, {len(anchors)} published anchors -> {out_dir}")

    skipped = []
    points = evaluate(images, classic, learned, PointCache(cfg.cache_dir), cfg.workers,
                      cfg.y_psnr, cfg.progress, log=lambda m: (print(m), skipped.append(m)))
    versions = {c.name: c.version() for c in classic if c.available() is None}
    versions.update({c.name: ", ".join(c.models) for c in learned})
    command = cfg.get("command") or " ".join(
        ["python eval.py", *(shlex.quote(a) for a in sys.argv[1:])])
    meta = {
        "command": command,
        "dataset": (cfg.get("dataset_name") or Path(cfg.test_dir).name) if cfg.test_dir
        else "embedded images",
        "test_dir": _display_path(cfg.test_dir),
        "images": [i.name for i in images],
        "versions": versions,
        "skipped": [s.removeprefix("notice: skipping ") for s in skipped],
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
                   f"Python {platform.python_version()}",
        "config": OmegaConf.to_container(cfg, resolve=False),
    }
    report = write_report(out_dir, points, anchors, meta, cfg.bd.anchor, cfg.bd.min_overlap,
                          cfg.plot.max_bpp)
    if cfg.wandb.enabled:
        log_wandb(out_dir, report, points, cfg.wandb.project, cfg.wandb.mode,
                  cfg.wandb.get("name"))
    _print_summary(report, out_dir, time.perf_counter() - t0)
    return report


def _display_path(path: str | None) -> str | None:
    """``path`` relative to the project root when it is near it, or to ``~`` when under the home
    folder (reports travel with the repo, and a user's cache is not theirs to name)."""
    if path is None:
        return None
    rel = os.path.relpath(path, os.environ.get("PROJECT_ROOT", "."))
    if not rel.startswith("../../"):
        return rel
    home = Path.home()
    return f"~/{Path(path).relative_to(home)}" if Path(path).is_relative_to(home) else str(path)


def _print_summary(report: dict, out_dir: Path, seconds: float) -> None:
    rows = [r for r in report["bd"] if r["kind"] != "anchor"]
    if report["bd_anchor"] and rows:
        print(f"\nBD-rate vs {report['bd_anchor']} (RGB PSNR, cubic / PCHIP):")
        for r in rows:
            vals = [r["bd_rate_cubic"], r["bd_rate_pchip"]]
            txt = " / ".join("—" if v is None else f"{v:+.1f}%" for v in vals)
            print(f"  {r['curve']:<28} {txt}  {r['note']}")
    print(f"\nreport: {out_dir / 'report.md'} ({seconds:.0f} s)")
