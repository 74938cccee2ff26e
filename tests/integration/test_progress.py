"""Progress bars of long work: on a terminal's stderr only, and never with ``--quiet``."""

import io
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.cli import main
from codeclab.codecs import mbt2018_mean, stem
from codeclab.data.colour import rgb_to_yuv420
from codeclab.data.video import y4m_bytes
from codeclab.evaluation.classic import PillowCodec
from codeclab.evaluation.runner import EvalImage, evaluate
from codeclab.formats.model_file import export_model


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch) -> FakeTerminal:
    """A terminal as stderr; called in the test body (pytest's capture resets sys.stderr after fixtures)."""
    stderr = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    return stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    torch.manual_seed(0)
    export_model(mbt2018_mean(8, 12, rate_levels=8), folder / "vr.safetensors")
    export_model(stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard"), folder / "stem.safetensors")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 56, 3)).astype(np.uint8) for _ in range(3)]
    Image.fromarray(rng.integers(0, 256, (70, 100, 3)).astype(np.uint8)).save(folder / "in.png")  # 4 tiles of 64
    (folder / "clip.y4m").write_bytes(y4m_bytes([rgb_to_yuv420(f) for f in frames], Fraction(25), "limited"))
    return folder


def _encode(files, source, model, *args):
    out = files / "out.clab"
    assert main(["encode", str(files / source), "-m", str(files / model), "-o", str(out), *args]) == 0
    return out


BARS = [  # (what, input, model, flags, the bar's description)
    ("refinement", "in.png", "vr.safetensors", ["--refine", "3"], "refine:"),
    ("rate search", "in.png", "vr.safetensors", ["--target-bpp", "2"], "rate search:"),
    ("tiles", "in.png", "vr.safetensors", ["--tile", "64"], "tiles:"),
    ("video frames", "clip.y4m", "stem.safetensors", [], "encode:"),
]


@pytest.mark.parametrize("what, source, model, flags, bar", BARS, ids=[b[0] for b in BARS])
def test_encode_shows_a_bar_on_a_terminal_and_none_with_quiet(files, monkeypatch, what, source, model, flags, bar):
    terminal = on_terminal(monkeypatch)
    _encode(files, source, model, *flags)
    assert bar in terminal.getvalue()
    terminal.seek(0), terminal.truncate()
    _encode(files, source, model, *flags, "--quiet")
    assert terminal.getvalue() == ""


@pytest.mark.parametrize("source, model, flags, bar", [
    ("in.png", "vr.safetensors", ["--tile", "64"], "tiles:"), ("clip.y4m", "stem.safetensors", [], "decode:"),
], ids=["tiles", "video frames"])
def test_decode_shows_a_bar_per_tile_or_frame(files, monkeypatch, source, model, flags, bar):
    terminal = on_terminal(monkeypatch)
    coded = _encode(files, source, model, *flags, "--quiet")
    output = files / ("out.png" if source.endswith(".png") else "out.y4m")
    assert main(["decode", str(coded), "-m", str(files / model), "-o", str(output)]) == 0
    assert bar in terminal.getvalue()
    terminal.seek(0), terminal.truncate()
    assert main(["decode", str(coded), "-m", str(files / model), "-o", str(output), "--quiet"]) == 0
    assert terminal.getvalue() == ""


def test_one_tile_has_no_bar(files, monkeypatch):
    terminal = on_terminal(monkeypatch)
    _encode(files, "in.png", "vr.safetensors")
    assert terminal.getvalue() == ""


def test_no_bar_when_stderr_is_not_a_terminal(files, capsys):
    _encode(files, "in.png", "vr.safetensors", "--refine", "3")
    _encode(files, "clip.y4m", "stem.safetensors")
    assert capsys.readouterr().err == ""


def test_eval_reuses_its_progress_option(monkeypatch):
    terminal = on_terminal(monkeypatch)
    image = EvalImage("a", np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8))
    jpeg = PillowCodec("JPEG", ladder=[50], format="JPEG")
    evaluate([image], [jpeg], workers=1)
    assert "eval:" in terminal.getvalue()
    terminal.seek(0), terminal.truncate()
    evaluate([image], [jpeg], workers=1, progress=False)
    assert terminal.getvalue() == ""
