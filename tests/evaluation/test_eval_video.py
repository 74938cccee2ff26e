"""`python eval_video.py` end to end on three tiny frames: STEM, all-intra, live x264/x265 and the
report, at an intra period other than 12/32/-1, written into the Hydra run directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from codeclab.errors import CodecLabError
from codeclab.evaluation.video import _learned_stage
from codeclab.evaluation.video_report import markdown_tables, write_report

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "stem.safetensors"


def test_eval_video_main_on_three_frames(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    if not MODEL.is_file():
        pytest.skip(f"{MODEL} is not here")
    frames = tmp_path / "data" / "video" / "basketballpass"
    frames.mkdir(parents=True)
    photo = skimage.data.astronaut()
    for i in range(3):  # a slow pan over a photograph, 64x48
        Image.fromarray(photo[100:148, 150 + 2 * i : 214 + 2 * i]).save(frames / f"frame_{i + 1:04d}.png")
    run = tmp_path / "run"
    before = sorted((ROOT / "reports" / "video").iterdir()) if (ROOT / "reports" / "video").is_dir() else []
    proc = subprocess.run([sys.executable, "eval_video.py", f"paths.data_dir={tmp_path / 'data'}", "sequences=[basketballpass]",
                           "intra_periods=[5]", "levels=[32]", "video_anchors=fast", "video_anchors.qps=[32]",
                           f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    learned = json.loads((run / "learned.json").read_text())["basketballpass"]
    anchors = json.loads((run / "anchors.json").read_text())["basketballpass"]
    assert learned["frames"] == 3 and learned["size"] == [64, 48]
    stem = learned["stem"]["5"][0]
    assert stem["frames_I"] == 1 and stem["frames_P"] == 2 and stem["level"] == 32
    assert learned["all-intra"]["1"][0]["frames_P"] == 0
    for system in ("x264-medium", "x265-medium"):
        assert anchors[system]["5"][0]["qp"] == 32 and anchors[system]["5"][0]["psnr-rgb"] > 20
    assert "| 5 |" in (run / "tables.md").read_text()
    assert (run / "basketballpass.png").stat().st_size > 0
    assert sorted((ROOT / "reports" / "video").iterdir()) == before  # the committed report is untouched


def test_report_handles_any_intra_period(tmp_path):
    """Intra periods other than 12/32/-1 get a plot panel, a table row and P-frame savings."""
    def points(level_bpp, psnr_offset=0.0):
        return [{"level": lv, "bpp": b, "bpp_P": b * 0.7, "psnr-rgb": 30 + 2 * i + psnr_offset, "psnr-yuv": 32 + 2 * i}
                for i, (lv, b) in enumerate(level_bpp)]
    ladder = [(8, 0.1), (24, 0.2), (40, 0.4), (56, 0.8)]
    learned = {"seq": {"frames": 10, "size": [64, 48], "all-intra": {"1": points(ladder)},
                       "stem": {"5": points([(lv, b * 0.7) for lv, b in ladder]), "2": points(ladder)}}}
    summary = write_report({"learned": learned, "anchors": {}}, tmp_path, tmp_path)
    tables = markdown_tables(summary)
    assert "| 2 |" in tables and "| 5 |" in tables and tables.index("| 2 |") < tables.index("| 5 |")
    assert summary["sequences"]["seq"]["bd_rate"]["psnr-rgb"]["5"]["vs all-intra"] == pytest.approx(-30, abs=0.5)
    assert {r["intra_period"] for r in summary["sequences"]["seq"]["p_frame_savings"]} == {"2", "5"}
    assert (tmp_path / "seq.png").stat().st_size > 0
    assert "BD-rate of STEM," in tables and "adaptive" not in tables
    adaptive = markdown_tables(write_report({"learned": {**learned, "adaptive_intra": True}, "anchors": {}}, tmp_path, tmp_path))
    assert "BD-rate of STEM (adaptive I-frames)," in adaptive


@pytest.mark.parametrize("adaptive", [True, False])
def test_learned_stage_refuses_to_mix_gop_modes_in_one_file(tmp_path, adaptive):
    """The report labels a whole learned.json by one adaptive_intra flag, so a run of the other
    mode must go to another folder (and leaves the file as it was)."""
    results = tmp_path / "learned.json"
    results.write_text(json.dumps({"adaptive_intra": not adaptive, "seq": {"frames": 3}}))
    before = results.read_text()

    class Config:
        adaptive_intra = adaptive

    with pytest.raises(CodecLabError, match=f"adaptive_intra={not adaptive}; write adaptive_intra={adaptive} runs to another output_dir"):
        _learned_stage(None, "stem.safetensors", Config, [], results)
    assert results.read_text() == before
