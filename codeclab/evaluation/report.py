"""Turn measured points and published anchors into a report: JSON, CSV, Markdown and PNG plots.

Averaging convention (CompressAI's): a curve point is the mean over images of per-image bpp,
PSNR, MS-SSIM and times at one setting. MS-SSIM in dB on curves and plots is
``-10 log10(1 - mean MS-SSIM)``, the conversion CompressAI's plots apply to its averaged JSON, so
measured and published curves are converted the same way.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codeclab.evaluation.bd_rate import bd
from codeclab.evaluation.curves import PSNR, RDCurve, to_compressai_dict

CURVE_METRICS = ("psnr-rgb", "ms-ssim-rgb", "psnr-y")
MSSSIM_DB = "ms-ssim-rgb-db"


def setting_label(setting) -> str:
    """Short label of a ladder setting (a learned model's file name, else the value)."""
    s = str(setting)
    return Path(s).name if ("/" in s or s.endswith((".pt", ".safetensors", ".ckpt"))) else s


def aggregate(points: list[dict]) -> list[RDCurve]:
    """Mean per (curve, setting) over images; one ``RDCurve`` per measured curve, sorted by bpp.

    Times go into ``metrics`` as ``encoding_time``/``decoding_time`` so the CompressAI JSON
    carries them; ``curve.settings`` labels the points in the same (bpp) order.
    """
    groups: dict[str, dict] = {}
    for p in points:
        g = groups.setdefault(p["curve"], {"kind": p["kind"], "settings": {}})
        g["settings"].setdefault(str(p["setting"]), []).append(p)
    curves = []
    for name, g in groups.items():
        rows = list(g["settings"].items())
        keys = [k for k in (*CURVE_METRICS, "encoding_time", "decoding_time") if k in rows[0][1][0]]
        bpp = np.array([np.mean([p["bpp"] for p in ps]) for _, ps in rows])
        mets = {k: np.array([np.mean([p[k] for p in ps]) for _, ps in rows]) for k in keys}
        order = np.argsort(bpp)
        curves.append(RDCurve(name, bpp[order], {k: v[order] for k, v in mets.items()},
                              g["kind"], "measured", [setting_label(rows[i][0]) for i in order]))
    return curves


@dataclass
class BDRow:
    curve: str
    kind: str
    points: int
    bd_rate_cubic: float | None
    bd_rate_pchip: float | None
    bd_psnr: float | None
    psnr_range: tuple | None
    bd_rate_msssim: float | None
    note: str


def bd_table(curves: list[RDCurve], anchor: RDCurve, min_overlap: float = 0.5) -> list[BDRow]:
    """BD-rate of every curve against ``anchor``: RGB PSNR with the cubic (VCEG-M33) and PCHIP
    (JVET) fits, BD-PSNR (cubic), and BD-rate on MS-SSIM in dB (cubic) where both curves have it.
    """
    rows = []
    qa = anchor.quality(PSNR)
    for c in curves:
        if c is anchor:
            continue
        q = c.quality(PSNR)
        cubic = pchip = None
        notes = []
        if q is not None and qa is not None:
            cubic = bd(anchor.bpp, qa, c.bpp, q, "cubic", min_overlap)
            pchip = bd(anchor.bpp, qa, c.bpp, q, "pchip", min_overlap)
            notes += cubic.warnings
        else:
            notes.append("no RGB PSNR")
        ms = None
        ma, mc = anchor.quality(MSSSIM_DB), c.quality(MSSSIM_DB)
        if ma is not None and mc is not None:
            ms = bd(anchor.bpp, ma, c.bpp, mc, "cubic", min_overlap)
            notes += [f"MS-SSIM: {w}" for w in ms.warnings if w not in notes]
        rows.append(BDRow(
            c.name, c.kind, len(c.bpp),
            cubic.bd_rate if cubic else None, pchip.bd_rate if pchip else None,
            cubic.bd_psnr if cubic else None, cubic.quality_range if cubic else None,
            ms.bd_rate if ms else None, "; ".join(notes)))
    return rows


# ---------------------------------------------------------------- formatting helpers

def _f(x, nd=2, signed=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def bd_markdown(rows: list[BDRow]) -> list[str]:
    body = [[r.curve, r.kind, str(r.points), _f(r.bd_rate_cubic, 1, True),
             _f(r.bd_rate_pchip, 1, True), _f(r.bd_psnr, 2, True),
             f"{r.psnr_range[0]:.1f}–{r.psnr_range[1]:.1f}" if r.psnr_range else "—",
             _f(r.bd_rate_msssim, 1, True), r.note] for r in rows]
    body.sort(key=lambda r: float(r[3]) if r[3] != "—" else math.inf)
    return _table(["curve", "kind", "points", "BD-rate cubic (%)", "BD-rate PCHIP (%)",
                   "BD-PSNR (dB)", "PSNR overlap (dB)", "BD-rate MS-SSIM dB (%)", "note"], body)


def curve_markdown(curves: list[RDCurve]) -> list[str]:
    rows = []
    for c in curves:
        for i, s in enumerate(c.settings):
            m = c.metrics
            rows.append([c.name, s, f"{c.bpp[i]:.4f}", _f(m["psnr-rgb"][i]),
                         _f(m["ms-ssim-rgb"][i], 4), _f(c.quality(MSSSIM_DB)[i]),
                         _f(m["psnr-y"][i]) if "psnr-y" in m else "—",
                         _f(m["encoding_time"][i], 3), _f(m["decoding_time"][i], 3)])
    return _table(["curve", "setting", "bpp", "PSNR (dB)", "MS-SSIM", "MS-SSIM (dB)",
                   "Y-PSNR (dB)", "enc (s)", "dec (s)"], rows)


def per_image_markdown(points: list[dict], curve: RDCurve) -> list[str]:
    """Rows: images; columns: the curve's settings; cells: bpp / PSNR / MS-SSIM dB."""
    cells: dict[str, dict[str, str]] = {}
    for p in points:
        if p["curve"] == curve.name:
            cells.setdefault(p["image"], {})[setting_label(p["setting"])] = (
                f"{p['bpp']:.3f} / {p['psnr-rgb']:.2f} / {_f(p['ms-ssim-rgb-db'])}")
    rows = [[img] + [c.get(s, "—") for s in curve.settings] for img, c in cells.items()]
    return _table(["image"] + curve.settings, rows)


# ---------------------------------------------------------------- plots

def plot_rd(curves: list[RDCurve], metric: str, path: Path, title: str,
            max_bpp: float | None = None) -> None:
    """One RD plot: measured curves solid (learned thicker), published anchors dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [c for c in curves if c.kind != "anchor"]
    if max_bpp is None:
        top = max((c.bpp.max() for c in measured), default=None)
        max_bpp = min(top * 1.05, 4.0) if top else 2.0
    fig, ax = plt.subplots(figsize=(11, 6.5), dpi=100)
    ys = []
    # Measured curves: bright tab10, solid; published anchors: a muted palette, dashed, thin.
    palettes = {"anchor": plt.get_cmap("Dark2").colors + ((0.4, 0.4, 0.4),),
                "measured": plt.get_cmap("tab10").colors}
    used = {"anchor": 0, "measured": 0}
    # Measured curves first so they lead the legend.
    for c in sorted(curves, key=lambda c: c.kind == "anchor"):
        q = c.quality(metric)
        if q is None:
            continue
        group = "anchor" if c.kind == "anchor" else "measured"
        color = palettes[group][used[group] % len(palettes[group])]
        used[group] += 1
        style = {"anchor": dict(ls="--", lw=1.2, marker="x", ms=5, alpha=0.9),
                 "classic": dict(ls="-", lw=1.8, marker="o", ms=4),
                 "learned": dict(ls="-", lw=2.8, marker="*", ms=10)}[c.kind]
        label = f"{c.name} (published)" if c.kind == "anchor" else c.name
        ax.plot(c.bpp, q, label=label, color=color, **style)
        ys.extend(q[(c.bpp <= max_bpp) & np.isfinite(q)])
    ax.set_xlim(0, max_bpp)
    if ys:
        lo, hi = np.percentile(ys, 2), max(ys)
        ax.set_ylim(lo - 0.5, hi + 0.5)
    ax.set_xlabel("bits per pixel (real bytes × 8 / pixels)")
    ax.set_ylabel({PSNR: "RGB PSNR (dB)", MSSSIM_DB: "MS-SSIM (dB), −10·log10(1−MS-SSIM)"}
                  .get(metric, metric))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- writing it all

def _rounded(p: dict) -> dict:
    """A point for points.json/csv: floats cut to 7 significant digits (far below measurement
    noise) and the codec version left to the report's meta, so committed reports stay small."""
    return {k: float(f"{v:.7g}") if isinstance(v, float) else v for k, v in p.items()
            if k != "version"}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(x) else float(x)  # strict JSON has no inf/nan
    return x


def write_report(out_dir, points: list[dict], anchors: list[RDCurve], meta: dict,
                 bd_anchor: str | None = "VTM", min_overlap: float = 0.5,
                 max_bpp: float | None = None) -> dict:
    """Write points.json, points.csv, report.json, curves/*.json (CompressAI format),
    rd_psnr.png, rd_msssim.png and report.md into ``out_dir``; return the report dict.

    ``meta`` carries the command, dataset, images, codec versions and skipped codecs; it is
    echoed at the top of the Markdown report. ``bd_anchor`` names the curve (anchor or measured)
    every other curve is compared with.
    """
    out = Path(out_dir)
    (out / "curves").mkdir(parents=True, exist_ok=True)
    measured = aggregate(points)
    curves = anchors + measured
    reference = next((c for c in curves if c.name == bd_anchor), None)
    rows = bd_table(curves, reference, min_overlap) if reference is not None else []

    with open(out / "points.csv", "w", newline="") as fh:
        fields = list(dict.fromkeys(k for p in points for k in p))
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(_rounded(p) for p in points)
    for c in measured:
        extra = {"settings": c.settings}
        slug = "".join(ch if ch.isalnum() else "-" for ch in c.name).strip("-").lower()
        (out / "curves" / f"{slug}.json").write_text(json.dumps(_jsonable(to_compressai_dict(
            c, f"measured by codeclab eval on {meta.get('dataset', '?')}", extra)), indent=2))
    report = {
        "meta": meta,
        "averaging": "mean over images of per-image metrics (CompressAI convention)",
        "bd_anchor": reference.name if reference is not None else None,
        "curves": [{**to_compressai_dict(c), "kind": c.kind, "source": c.source,
                    "settings": c.settings} for c in curves],
        "bd": [asdict(r) for r in rows],
    }
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=1))
    # One point per line: readable and diff-friendly.
    lines = [json.dumps(_jsonable(_rounded(p))) for p in points]
    (out / "points.json").write_text("[\n" + ",\n".join(lines) + "\n]\n")

    title = f"{meta.get('dataset', '')} ({len(meta.get('images', []))} images)"
    plot_rd(curves, PSNR, out / "rd_psnr.png", f"RGB PSNR — {title}", max_bpp)
    plot_rd(curves, MSSSIM_DB, out / "rd_msssim.png", f"MS-SSIM — {title}", max_bpp)

    md = [f"# Rate-distortion report: {meta.get('dataset', '')}", ""]
    if meta.get("command"):
        md += ["Regenerate with:", "", "```", meta["command"], "```", ""]
    md += [f"{len(meta.get('images', []))} images from `{meta.get('test_dir') or 'embedded'}`. "
           "bpp = real bytes × 8 / pixels; metrics on the 8-bit decoded RGB images; "
           "each point is the mean over images of per-image values (CompressAI's convention); "
           "MS-SSIM dB = −10·log10(1 − mean MS-SSIM). Times are wall seconds per image on "
           f"{meta.get('machine', 'this machine')}; classic codecs ran in parallel processes.", ""]
    md += ["![RGB PSNR vs bpp](rd_psnr.png)", "", "![MS-SSIM vs bpp](rd_msssim.png)", ""]
    if reference is not None:
        md += [f"## BD-rate against {reference.name}", "",
               "Negative = fewer bits than the anchor at equal quality. Cubic: Bjontegaard, "
               "VCEG-M33; PCHIP: the piecewise-cubic variant of JVET's CTC. BD-PSNR uses the "
               "cubic fit. No number is given for curves with fewer than 4 points or a quality "
               f"overlap under {100 * min_overlap:.0f}% of the shorter curve's range.", ""]
        md += bd_markdown(rows) + [""]
    elif bd_anchor:
        md += [f"_No curve named {bd_anchor!r}: BD-rate table skipped._", ""]
    md += ["## Codecs", ""]
    md += _table(["curve", "kind", "version / source", "settings"],
                 [[c.name, c.kind, meta.get("versions", {}).get(c.name, c.source),
                   ", ".join(c.settings)] for c in curves])
    for note in meta.get("skipped", []):
        md.append(f"\n_Skipped: {note}_")
    if measured:
        md += ["", "## Mean over images", ""] + curve_markdown(measured)
        md += ["", "## Per image (bpp / PSNR dB / MS-SSIM dB)", ""]
        for c in measured:
            md += [f"<details><summary>{c.name}</summary>", ""]
            md += per_image_markdown(points, c) + ["", "</details>", ""]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return report


def log_wandb(out_dir, report: dict, points: list[dict], project: str, mode: str = "online",
              name: str | None = None) -> None:
    """Log the plots, the BD table and every point to Weights & Biases."""
    import wandb

    out = Path(out_dir)
    run = wandb.init(project=project, name=name, mode=mode, config=report["meta"])
    cols = list(dict.fromkeys(k for p in points for k in p))
    run.log({
        "rd_psnr": wandb.Image(str(out / "rd_psnr.png")),
        "rd_msssim": wandb.Image(str(out / "rd_msssim.png")),
        "points": wandb.Table(columns=cols, data=[[p.get(k) for k in cols] for p in points]),
        "bd": wandb.Table(columns=list(BDRow.__dataclass_fields__),
                          data=[[str(v) if isinstance(v, (tuple, list)) else v
                                 for v in r.values()] for r in report["bd"]]),
    })
    run.finish()
