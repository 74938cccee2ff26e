"""Report files: JSON/CSV of every point, CompressAI-format curves, Markdown with BD table, PNGs."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from codeclab.evaluation.curves import RDCurve, read_curve
from codeclab.evaluation.report import aggregate, write_report


def _points():
    pts = []
    for curve, kind, gain in (("codec A", "classic", 0.0), ("codec B", "learned", 1.0)):
        for i, q in enumerate((10, 30, 50, 70)):
            for img, off in (("im1", 0.0), ("im2", 0.5)):
                bpp = 0.2 * (i + 1) + 0.01 * off
                pts.append({"curve": curve, "kind": kind, "setting": q, "image": img,
                            "height": 200, "width": 300, "bytes": int(bpp * 60000 / 8),
                            "bpp": bpp, "psnr-rgb": 28 + 3 * i + gain + off,
                            "ms-ssim-rgb": 0.9 + 0.02 * i, "ms-ssim-rgb-db": 10.0 + i,
                            "psnr-y": 30 + 3 * i, "encoding_time": 0.1, "decoding_time": 0.05})
    return pts


def test_aggregate_is_the_mean_of_per_image_values():
    a, b = aggregate(_points())
    assert a.name == "codec A" and a.settings == ["10", "30", "50", "70"]
    assert a.metrics["psnr-rgb"][0] == pytest.approx(28.25)  # mean of 28 and 28.5
    assert a.bpp[0] == pytest.approx(0.2025) and b.kind == "learned"


def test_write_report_files(tmp_path):
    anchor = RDCurve("VTM", np.array([0.1, 0.3, 0.6, 1.0, 1.5]),
                     {"psnr-rgb": np.array([27.0, 31.0, 34.0, 37.0, 40.0])})
    short = RDCurve("Paper", np.array([0.2, 0.5, 0.9]),
                    {"psnr-rgb": np.array([30.0, 34.0, 37.0])})
    meta = {"command": "python eval.py data=x", "dataset": "x", "images": ["im1", "im2"],
            "versions": {"codec A": "libA 1.0"}, "skipped": ["codec C: not installed"]}
    report = write_report(tmp_path, _points(), [anchor, short], meta, bd_anchor="VTM")

    names = {p.name for p in tmp_path.iterdir()}
    assert {"report.md", "report.json", "points.json", "points.csv", "rd_psnr.png",
            "rd_msssim.png", "curves"} <= names
    assert (tmp_path / "rd_psnr.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(tmp_path / "points.csv")))
    assert len(rows) == 16 and float(rows[0]["bpp"]) == pytest.approx(0.2)
    assert len(json.loads((tmp_path / "points.json").read_text())) == 16

    # The measured curves are readable CompressAI JSON.
    b = read_curve(tmp_path / "curves" / "codec-b.json")
    assert b.name == "codec B" and len(b.bpp) == 4

    bd = {r["curve"]: r for r in report["bd"]}
    assert report["bd_anchor"] == "VTM" and set(bd) == {"Paper", "codec A", "codec B"}
    assert bd["codec B"]["bd_rate_cubic"] < bd["codec A"]["bd_rate_cubic"]  # B is 1 dB better
    assert bd["Paper"]["bd_rate_cubic"] is None and "3 points" in bd["Paper"]["note"]

    md = (tmp_path / "report.md").read_text()
    assert md.index("python eval.py data=x") < md.index("## BD-rate against VTM")
    assert "| codec A | classic | libA 1.0 |" in md and "Skipped: codec C" in md
    assert "![RGB PSNR vs bpp](rd_psnr.png)" in md and "<summary>codec B</summary>" in md
    assert json.loads((tmp_path / "report.json").read_text())["curves"][0]["name"] == "VTM"


def test_missing_bd_anchor_is_noted(tmp_path):
    write_report(tmp_path, _points(), [], {"dataset": "x"}, bd_anchor="VTM")
    assert "No curve named 'VTM'" in (tmp_path / "report.md").read_text()


def test_notebook_redraws_a_finished_report(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    anchor = RDCurve("VTM", np.array([0.1, 0.3, 0.6, 1.0]),
                     {"psnr-rgb": np.array([27.0, 31.0, 34.0, 37.0])})
    write_report(tmp_path, _points(), [anchor], {"command": "python eval.py", "dataset": "x"})
    nb = json.loads((Path(__file__).resolve().parents[2] / "notebooks/rd_report.ipynb").read_text())
    assert nb["nbformat"] == 4
    monkeypatch.setenv("REPORT_DIR", str(tmp_path))
    scope = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), scope)  # noqa: S102 - our own notebook
    assert len(scope["report"]["curves"]) == 3 and scope["rows"][0]["curve"] == "codec B"


def test_wandb_logging_runs_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from codeclab.evaluation.report import log_wandb

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    report = write_report(tmp_path, _points(), [], {"dataset": "x"}, bd_anchor="codec A")
    log_wandb(tmp_path, report, _points(), project="codeclab-test", mode="offline")
    # The offline run holds both plots and the table of every point, as logged.
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    media = run / "files" / "media"
    assert len(list((media / "images").glob("rd_psnr_*.png"))) == 1
    assert len(list((media / "images").glob("rd_msssim_*.png"))) == 1
    (table,) = (media / "table").glob("points_*.table.json")
    logged = json.loads(table.read_text())
    assert len(logged["data"]) == len(_points()) and "bpp" in logged["columns"]
