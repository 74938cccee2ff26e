"""`codeclab bd-rate`: output format and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codeclab import cli
from codeclab.evaluation.bd_rate import bd

ANCHOR = {"name": "VTM", "results": {"bpp": [0.05, 0.11, 0.25, 0.49, 0.87, 1.43],
                                     "psnr-rgb": [26.1, 28.5, 31.2, 34.3, 37.4, 40.4]}}
TEXT = "# Aggregate rate-distortion data for \"Mine\" on kodak.\n" + "".join(
    f"{r}, {q}\n" for r, q in zip([0.06, 0.14, 0.30, 0.62, 1.10, 1.90],
                                  [25.9, 28.4, 31.0, 34.1, 37.0, 40.2]))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "vtm.json").write_text(json.dumps(ANCHOR))
    (tmp_path / "mine.txt").write_text(TEXT)
    (tmp_path / "three.txt").write_text("0.1, 27\n0.2, 29\n0.4, 32\n")
    (tmp_path / "deep.json").write_text("[" * 100_000)
    (tmp_path / "utf16.json").write_text(json.dumps(ANCHOR), encoding="utf-16")
    return tmp_path


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_prints_bd_rate_last_line(files, capsys, method):
    assert cli.main(["bd-rate", str(files / "mine.txt"), "--anchor",
                     str(files / "vtm.json"), "--method", method]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in last.split())
    expected = bd(ANCHOR["results"]["bpp"], ANCHOR["results"]["psnr-rgb"],
                  [0.06, 0.14, 0.30, 0.62, 1.10, 1.90], [25.9, 28.4, 31.0, 34.1, 37.0, 40.2],
                  method)
    assert float(fields["bd_rate"]) == pytest.approx(expected.bd_rate, abs=1e-4)
    assert float(fields["bd_psnr"]) == pytest.approx(expected.bd_psnr, abs=1e-4)


@pytest.mark.parametrize("curve, message", [
    ("missing.json", "cannot read curve"),
    ("three.txt", "at least 4"),
    ("deep.json", "nested too deeply"),
    ("utf16.json", "not UTF-8 text"),
])
def test_errors_are_one_line_and_nonzero(files, capsys, curve, message):
    assert cli.main(["bd-rate", str(files / curve), "--anchor", str(files / "vtm.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("codeclab: error:") and message in err and "\n" not in err


@pytest.mark.parametrize("value, message", [("nan", "must be finite"), ("inf", "must be finite"), ("1.5", "must be in")])
def test_min_overlap_must_be_a_share(files, capsys, value, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bd-rate", str(files / "mine.txt"), "--anchor", str(files / "vtm.json"), "--min-overlap", value])
    assert exit_.value.code == 2 and f"argument --min-overlap: {message}" in capsys.readouterr().err


def test_unknown_method_is_one_line(files, capsys):
    assert cli.main(["bd-rate", str(files / "mine.txt"), "--anchor", str(files / "vtm.json"), "--method", "nope"]) == 1
    assert capsys.readouterr().err == "codeclab: error: unknown BD method 'nope'; choose one of cubic, pchip, akima\n"


def test_wired_into_codeclab_cli(files):
    root = Path(__file__).resolve().parents[2]
    ok = subprocess.run([sys.executable, "-m", "codeclab.cli", "bd-rate", str(files / "mine.txt"),
                         "--anchor", str(files / "vtm.json")], capture_output=True, text=True,
                        cwd=root)
    assert ok.returncode == 0 and ok.stdout.strip().splitlines()[-1].startswith("bd_rate=")
    bad = subprocess.run([sys.executable, "-m", "codeclab.cli", "bd-rate", "nope.json",
                          "--anchor", str(files / "vtm.json")], capture_output=True, text=True,
                         cwd=root)
    assert bad.returncode != 0 and bad.stderr.startswith("codeclab: error:")
    assert "Traceback" not in bad.stderr
