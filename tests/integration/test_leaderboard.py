"""The entropy-model leaderboard (benchmarks/leaderboard.py, issue 28): every listed entropy model
composes with the leaderboard's one transform at its width and codes exactly; the whole pipeline
(train by wall-clock budget, skip finished models, evaluate real files, report) runs at a smoke scale."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from codeclab.coding import get_coder
from codeclab.formats.model_file import load_model

CODER = get_coder()

ROOT = Path(__file__).resolve().parents[2]


def _leaderboard():
    spec = importlib.util.spec_from_file_location("leaderboard", ROOT / "benchmarks" / "leaderboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


leaderboard = _leaderboard()
DATA = Path(os.environ.get("CODECLAB_DATA", ROOT.parent / "shared" / "data"))
CPU = leaderboard.budget_config("cpu", DATA)
ENTRIES = list(CPU.leaderboard.entries)


def test_the_budgets_share_one_transform_and_list_every_entropy_model():
    assert set(ENTRIES) == {"factorized", "scale_hyperprior", "hyperprior", "autoregressive", "autoregressive_integer",
                            "checkerboard", "charm", "elic", "mixture", "acgc", "mlicpp", "mlicv2"}
    assert CPU.leaderboard.anchor == "hyperprior" and len(CPU.leaderboard.lambdas) == 4
    for budget in ("cpu", "gpu", "smoke"):
        cfg = leaderboard.budget_config(budget, DATA)
        assert cfg.codec._target_ == "codeclab.codecs.compose" and cfg.codec.transform.name == "cnn"
        assert cfg.trainer.max_time == cfg.leaderboard.time_per_model and cfg.trainer.limit_val_batches == 0
        assert cfg.callbacks.checkpoint.train_time_interval is not None  # resumable by time
        assert not cfg.leaderboard.entry_overrides  # no entropy model needs its own width
        assert cfg.leaderboard.variable_rate and list(cfg.leaderboard.fixed_rate_entries) == ["factorized"]
    # A variable-rate entry trains one model for the time of all its lambdas, with them as its levels.
    (model,) = leaderboard.entry_models(CPU.leaderboard, "elic")
    assert model["levels"] == [0, 1, 2, 3] and "trainer.max_time=00:00:24:00" in model["overrides"]
    assert "+codec.entropy.lmbdas=[0.0018,0.0035,0.0067,0.013]" in model["overrides"]
    assert [m["name"] for m in leaderboard.entry_models(CPU.leaderboard, "factorized")] == [
        "lmbda_0.0018", "lmbda_0.0035", "lmbda_0.0067", "lmbda_0.013"]
    assert (CPU.codec.transform.N, CPU.codec.transform.M) == (96, 160)


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_entropy_model_codes_exactly_on_the_leaderboard_transform(entry):
    cfg = leaderboard.compose_run("cpu", entry, 0.0067, Path("."), DATA)
    torch.manual_seed(0)
    codec = instantiate(cfg.codec)
    assert codec.entropy_model.M == 160 and type(codec.entropy_model).registry_name == cfg.codec.entropy.name
    x = torch.rand(1, 3, 64, 64)
    codec.train()
    out = codec(x)
    assert out["x_hat"].shape == x.shape and all(torch.isfinite(v).all() for v in out["likelihoods"].values())
    codec.eval()
    compressed = codec.compress(x, CODER)
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, CODER), codec.quantize(x))
    assert codec.decompress(compressed, CODER).shape == x.shape


def test_bd_rate_against_the_anchor_entry():
    anchor = {"rates": [{"bpp": b, "psnr": 25 + 4 * np.log2(b / 0.1)} for b in (0.1, 0.2, 0.4, 0.8)]}
    test = {"rates": [{"bpp": 0.9 * r["bpp"], "psnr": r["psnr"]} for r in anchor["rates"]]}
    assert leaderboard.bd_against(anchor, test)["cubic"] == pytest.approx(-10.0, abs=1e-6)
    # A model 1 dB worse at every rate and above the anchor's quality range: no BD-rate, a BD-PSNR.
    worse = {"rates": [{"bpp": r["bpp"], "psnr": r["psnr"] - 1} for r in anchor["rates"]]}
    assert leaderboard.bd_against(anchor, worse)["psnr"] == pytest.approx(-1.0, abs=1e-6)
    apart = {"rates": [{"bpp": r["bpp"], "psnr": r["psnr"] - 30} for r in anchor["rates"]]}
    result = leaderboard.bd_against(anchor, apart)
    assert result["pchip"] is None and result["psnr"] == pytest.approx(-30.0, abs=1e-6)


def test_the_leaderboard_runs_end_to_end_at_a_smoke_scale(tmp_path):
    out = tmp_path / "board"
    args = ["--smoke", "--out", str(out), "--data", str(DATA), "--json-file", str(tmp_path / "smoke.json")]
    assert leaderboard.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert json.loads((tmp_path / "smoke.json").read_text()) == report
    assert list(report["entries"]) == ["factorized", "hyperprior"] and report["lambdas"] == [0.002, 0.02]
    # The factorized prior has no rate levels: one model per lambda; the hyperprior is one
    # variable-rate model whose levels are the lambdas, for the time of both.
    runs = {"factorized": ["lmbda_0.002", "lmbda_0.02"], "hyperprior": ["variable"]}
    for name, row in report["entries"].items():
        assert [t["steps"] for t in row["train"]] == [2] * len(runs[name])
        assert len(row["eval"]["rates"]) == 2 and row["eval"]["encode_s"] > 0 and row["eval"]["decode_s"] > 0
        assert row["params"] > row["entropy_params"] > 0 and row["kmac_per_pixel"] > row["entropy_kmac_per_pixel"] > 0
        assert "cubic" in row["bd_rate"] and "psnr" in row["bd_rate"]  # no number from two points: a warning says why
        for run in runs[name]:
            assert (out / "runs" / name / run / "model.safetensors").is_file()
    variable = report["entries"]["hyperprior"]
    assert variable["train"][0]["levels"] == [0, 1]
    assert [r["model"].rsplit("@", 1)[1] for r in variable["eval"]["rates"]] == ["0", "1"]
    model = load_model(variable["train"][0]["model"])
    assert model.rate_levels == 2 and model.entropy_model.gain_bank.lmbdas.tolist() == pytest.approx([0.002, 0.02])
    table = (out / "report.md").read_text()
    for column in ("BD-rate cubic", "BD-PSNR dB", "encode s", "decode s", "params", "kMAC/px"):
        assert column in table
    # A rerun trains nothing: finished models are skipped (no new logger version), points come from the cache.
    info = (out / "runs" / "hyperprior" / "variable" / "train_info.json").read_text()
    assert leaderboard.main(args) == 0
    assert (out / "runs" / "hyperprior" / "variable" / "train_info.json").read_text() == info
    assert not list(out.glob("runs/*/*/csv/version_1"))
    # --report-only rebuilds the report from entries/ alone: an entry file written by another
    # session joins it, and no entry file is rewritten.
    entries = {p.name: p.read_text() for p in (out / "entries").iterdir()}
    other = json.loads(entries["hyperprior.json"])
    (out / "entries" / "checkerboard.json").write_text(json.dumps(other))
    assert leaderboard.main([*args, "--report-only"]) == 0
    rebuilt = json.loads((out / "report.json").read_text())
    assert list(rebuilt["entries"]) == ["factorized", "hyperprior", "checkerboard"]
    assert rebuilt["entries"]["checkerboard"]["bd_rate"]["cubic"] == rebuilt["entries"]["hyperprior"]["bd_rate"]["cubic"]
    assert {p.name: p.read_text() for p in (out / "entries").iterdir() if p.name != "checkerboard.json"} == entries
