"""The video report: per-sequence BD-rates, P-frame savings, RD plots and the training curve.

Input: ``{"learned": ..., "anchors": ...}`` as :mod:`eval_video` writes them (sequence -> system
-> intra period -> points). BD-rates use the project's :func:`~codeclab.evaluation.bd_rate.bd`
(cubic, over the overlapping quality range) on RGB PSNR and on YUV 6:1:1 PSNR.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .bd_rate import bd

QUALITIES = {"psnr-rgb": "RGB PSNR", "psnr-yuv": "YUV PSNR (6:1:1)"}


def _periods(keys) -> list[str]:
    """The P-frame intra periods among ``keys`` (any, not only 12/32/-1), ascending, -1 last."""
    return sorted((k for k in keys if k != "1"), key=lambda k: (int(k) < 0, int(k)))


def _label(period: str) -> str:
    return {"1": "all-intra", "-1": "-1 (first frame only)"}.get(period, period)


def _curve(points: list[dict], quality: str) -> tuple[np.ndarray, np.ndarray]:
    points = sorted(points, key=lambda p: p["bpp"])
    return np.array([p["bpp"] for p in points]), np.array([p[quality] for p in points])


def bd_rate_or_none(anchor: list[dict], test: list[dict], quality: str) -> float | None:
    result = bd(*_curve(anchor, quality), *_curve(test, quality))
    return None if result.bd_rate is None else round(float(result.bd_rate), 2)


def p_frame_savings(learned: dict) -> list[dict]:
    """Per intra period and level: STEM's mean P-frame bpp against the all-intra bpp of the same
    sequence at the same level (equal quantisation step), with both RGB PSNRs."""
    rows = []
    intra = learned.get("all-intra", {}).get("1")
    if not intra:
        return rows
    by_level = {p["level"]: p for p in intra}
    stem = learned.get("stem", {})
    for period in _periods(stem):
        for point in stem[period]:
            reference = by_level.get(point["level"])
            if reference is None or point.get("bpp_P") is None:
                continue
            rows.append({"intra_period": period, "level": point["level"], "frames_I_P": f"{point.get('frames_I')} / {point.get('frames_P')}",
                         "bpp_P": point["bpp_P"], "bpp_all_intra": reference["bpp"],
                         "saving_%": round(100 * (1 - point["bpp_P"] / reference["bpp"]), 1),
                         "psnr_rgb_stem": round(point["psnr-rgb"], 3), "psnr_rgb_all_intra": round(reference["psnr-rgb"], 3)})
    return rows


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def _plot(name: str, systems: dict, output: Path, references: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One panel per intra period; all-intra alone when there are none.
    periods = _periods({p for curves in systems.values() for p in curves}) or ["1"]
    figure, axes = plt.subplots(1, len(periods), figsize=(5.5 * len(periods), 4.5), squeeze=False)
    for axis, period in zip(axes[0], periods):
        for system, curves in sorted(systems.items()):
            points = curves.get(period) or (curves.get("1") if system == "all-intra" else None)
            if not points:
                continue
            bpp, quality = _curve(points, "psnr-rgb")
            axis.plot(bpp, quality, "o-" if system in ("stem", "all-intra") else ".--", label=system)
        for label, (bpp, quality) in references.items():
            axis.plot(bpp, quality, "x:", color="grey", label=label)
        axis.set_title(f"{name}, intra period {_label(period)}")
        axis.set_xlabel("bpp")
        axis.set_ylabel("RGB PSNR (dB)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path = output / f"{name}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path.name


def _published(reference_dir: Path, name: str) -> dict:
    """Published HEVC class D curves (RGB, class averages; a different protocol) for BasketballPass."""
    if name != "basketballpass":
        return {}
    path = reference_dir / "pytorchvideocompression_hevc_class_c_d_rgb.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())["HEVC_D"]
    return {f"class D {k} (published, other protocol)": (np.array(v["bpp"]), np.array(v["psnr"])) for k, v in data.items()
            if k in ("H.265", "DCVC")}


def training_curve(metrics_csv: Path, output: Path) -> str | None:
    """Plot validation P-frame and all-intra bpp against steps from a Lightning CSV log."""
    if not metrics_csv.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get("val/bpp")]
    if not rows:
        return None
    steps = [int(r["step"]) for r in rows]
    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("val/bpp", "P-frame bpp (middle level)"), ("val/intra_bpp", "all-intra bpp, same frames"),
                       ("val/bpp_highest", "P-frame bpp (highest level)"), ("val/intra_bpp_highest", "all-intra (highest)")):
        if rows[0].get(key):
            axis.plot(steps, [float(r[key]) for r in rows], label=label)
    axis.set_xlabel("training step")
    axis.set_ylabel("estimated bpp (validation crops)")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = output / "training_curve.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path.name


def write_report(results: dict, output: Path, reference_dir: Path, notes: str = "") -> dict:
    """Write ``summary.json`` and the plots; returns the summary (the README is written by hand
    around the tables :func:`markdown_tables` prints)."""
    output.mkdir(parents=True, exist_ok=True)
    learned, anchors = results.get("learned", {}), results.get("anchors", {})
    summary = {"adaptive_intra": bool(learned.get("adaptive_intra")), "sequences": {}}
    for name in sorted(k for k in learned if isinstance(learned[k], dict)):
        systems = {k: v for k, v in learned[name].items() if isinstance(v, dict)}
        systems.update({k: v for k, v in anchors.get(name, {}).items() if isinstance(v, dict)})
        entry = {"frames": learned[name].get("frames"), "size": learned[name].get("size"), "bd_rate": {},
                 "p_frame_savings": p_frame_savings(learned[name])}
        for quality in QUALITIES:
            table = entry["bd_rate"].setdefault(quality, {})
            for period, stem_points in systems.get("stem", {}).items():
                row = table.setdefault(period, {})
                row["vs all-intra"] = bd_rate_or_none(systems["all-intra"]["1"], stem_points, quality) if "all-intra" in systems else None
                for system in sorted(s for s in systems if s.startswith(("x264", "x265"))):
                    if period in systems[system]:
                        row[f"vs {system}"] = bd_rate_or_none(systems[system][period], stem_points, quality)
        entry["plot"] = _plot(name, systems, output, _published(reference_dir, name))
        summary["sequences"][name] = entry
    (output / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def markdown_tables(summary: dict) -> str:
    """The report's tables: BD-rate of STEM per sequence and intra period, and P-frame savings."""
    lines, stem = [], "STEM (adaptive I-frames)" if summary.get("adaptive_intra") else "STEM"
    for name, entry in summary["sequences"].items():
        for quality, label in QUALITIES.items():
            table = entry["bd_rate"].get(quality, {})
            columns = sorted({c for row in table.values() for c in row}, key=lambda c: (c != "vs all-intra", c))
            lines += [f"**{name}** ({entry['frames']} frames, {entry['size'][0]}x{entry['size'][1]}), BD-rate of {stem}, {label}:", "",
                      "| intra period | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
            for period in _periods(table):
                lines.append(f"| {period} | " + " | ".join(_fmt(table[period].get(c)) for c in columns) + " |")
            lines.append("")
        if entry["p_frame_savings"]:
            lines += [f"P-frames of {name} against all-intra coding of the same sequence, per intra period and level:", "",
                      "| intra period | level | I / P frames | mean P-frame bpp | all-intra bpp | saving | RGB PSNR STEM | RGB PSNR all-intra |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {r['intra_period']} | {r['level']} | {r['frames_I_P']} | {r['bpp_P']:.4f} | {r['bpp_all_intra']:.4f} | {r['saving_%']}% | "
                      f"{r['psnr_rgb_stem']} | {r['psnr_rgb_all_intra']} |" for r in entry["p_frame_savings"]]
            lines.append("")
    return "\n".join(lines)
