"""``codeclab encode --quality | --level | --target-bpp`` with a variable-rate model file."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.cli import main
from codeclab.codecs import mbt2018_mean
from codeclab.formats import container
from codeclab.formats.model_file import export_model
from tests.conftest import run_main

LEVELS = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vr")
    torch.manual_seed(0)
    codec = mbt2018_mean(16, 24, rate_levels=LEVELS, scale_table_levels=256)
    with torch.no_grad():  # a wider latent than the initialisation gives, so rates differ per level
        codec.g_a[-1].weight.mul_(20)
    export_model(codec, folder / "vr.safetensors")
    export_model(mbt2018_mean(16, 24), folder / "fixed.safetensors")
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 40, (70, 90, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(folder / "in.png")
    return folder


def _encode(setup, *args):
    out = setup / "out.clab"
    assert main(["encode", str(setup / "in.png"), "-m", str(setup / "vr.safetensors"), "-o", str(out), *map(str, args)]) == 0
    header, _ = container.unpack(out.read_bytes())
    return header, out.stat().st_size * 8 / (70 * 90)


def test_quality_maps_to_the_nearest_level_and_the_level_is_in_the_header(setup):
    assert _encode(setup, "--quality", 0)[0].level == 0
    assert _encode(setup, "--quality", 1)[0].level == LEVELS - 1
    assert _encode(setup, "--quality", 0.5)[0].level == round(0.5 * (LEVELS - 1))
    header, _ = _encode(setup, "--level", 5)
    assert header.level == 5 and header.version == container.FORMAT_VERSION


def test_without_a_rate_flag_the_default_quality_is_used_and_said(setup, capsys):
    header, _ = _encode(setup)
    assert header.level == round(0.5 * (LEVELS - 1)) == 4
    assert "level 4 of 8, the default --quality 0.5)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    assert "(default 0.5 when no rate is given)" in " ".join(capsys.readouterr().out.split())


def test_info_describes_a_model_file_with_its_default_rate(setup, capsys):
    assert main(["info", str(setup / "vr.safetensors")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["codec"], info["rate_levels"]) == ("model", "mbt2018-mean", LEVELS)
    assert info["default_rate"] == "--quality 0.5 (level 4)" and "training_lmbda" not in info
    assert main(["info", str(setup / "fixed.safetensors")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "rate_levels" not in info and info["training_lmbda"] is None  # exported without one


def test_target_bpp_picks_the_highest_level_that_fits(setup):
    rates = [_encode(setup, "--level", level)[1] for level in range(LEVELS)]
    assert rates == sorted(rates) and rates[-1] > rates[0]
    target = (rates[3] + rates[4]) / 2
    header, bpp = _encode(setup, "--target-bpp", target)
    assert header.level == 3 and bpp == rates[3] <= target
    assert _encode(setup, "--target-bpp", rates[0] / 2)[0].level == 0  # nothing fits: the lowest level


def test_decode_reads_the_level_from_the_file(setup, tmp_path):
    _encode(setup, "--level", 6)
    proc = run_main("decode", setup / "out.clab", "-o", tmp_path / "out.png", "-m", setup / "vr.safetensors", check=True)
    assert "decoded" in proc.stdout and (tmp_path / "out.png").is_file()


@pytest.mark.parametrize("model, args, message", [
    ("vr.safetensors", ["--quality", "1.5"], "quality must be in [0, 1], got 1.5"),
    ("vr.safetensors", ["--level", "8"], "rate level 8 out of range [0, 8)"),
    ("fixed.safetensors", ["--quality", "0.5"], "is a fixed-rate model: --quality needs a variable-rate model"),
    ("fixed.safetensors", ["--target-bpp", "0.5"], "is a fixed-rate model: --target-bpp needs a variable-rate model"),
])
def test_rate_choices_that_do_not_fit_the_model_are_one_line_errors(setup, capsys, model, args, message):
    out = setup / "refused.clab"
    assert main(["encode", str(setup / "in.png"), "-m", str(setup / model), "-o", str(out), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("codeclab: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
