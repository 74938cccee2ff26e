"""The command line end to end, through subprocesses, with a model trained by train.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.coding import get_coder
from codeclab.data.images import read_image
from tests.conftest import ROOT, run_cli, run_main

CODER = get_coder()


@pytest.fixture(scope="module")
def encoded(trained_model, tmp_path_factory):
    import skimage.data

    folder = tmp_path_factory.mktemp("cli")
    image = skimage.data.coffee()[:77, :131]  # not a multiple of 64
    Image.fromarray(image).save(folder / "in.png")
    proc = run_main("encode", folder / "in.png", "-m", trained_model, "-o", folder / "in.clab", check=True)
    return folder, image, proc


def test_encode_reports_real_bpp(encoded):
    folder, image, proc = encoded
    size = (folder / "in.clab").stat().st_size
    assert f"{size} bytes" in proc.stdout
    assert f"{8 * size / (77 * 131):.4f} bpp" in proc.stdout


def test_decode_with_model_and_by_hash(encoded, trained_model):
    folder, image, _ = encoded
    run_cli("decode", folder / "in.clab", "-o", folder / "a.png", "-m", trained_model, check=True)
    run_cli("decode", folder / "in.clab", "-o", folder / "b.png", "--models-dir", trained_model.parent, check=True)
    a, b = read_image(folder / "a.png"), read_image(folder / "b.png")
    assert a.shape == image.shape and np.array_equal(a, b)
    psnr = 10 * np.log10(255**2 / np.mean((a.astype(float) - image) ** 2))
    assert psnr > 15  # a trained (if tiny) model, not noise


def test_compressai_coder_file_decodes_to_same_image(encoded, trained_model):
    folder, *_ = encoded
    run_main("encode", folder / "in.png", "-m", trained_model, "-o", folder / "ca.clab", "--coder", "compressai", check=True)
    info = json.loads(run_main("info", folder / "ca.clab", check=True).stdout)
    assert info["coder"] == "compressai"
    run_main("decode", folder / "ca.clab", "-o", folder / "ca.png", "-m", trained_model, check=True)
    run_main("decode", folder / "in.clab", "-o", folder / "cl.png", "-m", trained_model, check=True)
    assert np.array_equal(read_image(folder / "ca.png"), read_image(folder / "cl.png"))


def test_info(encoded, trained_model):
    folder, *_ = encoded
    info = json.loads(run_main("info", folder / "in.clab", check=True).stdout)
    assert (info["codec"], info["height"], info["width"], info["colour_mode"]) == ("mbt2018-mean", 77, 131, "RGB")
    assert info["coder"] == "codeclab"
    assert info["file_bytes"] == (folder / "in.clab").stat().st_size
    assert len(info["stream_bytes"]) == 2


def _assert_user_error(proc, pattern, output=None):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("codeclab: error: ") and pattern in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    if output is not None:
        assert not output.exists()
        assert not list(output.parent.glob(f".{output.name}*"))


def test_corrupt_truncated_and_versioned_files(encoded, trained_model):
    folder, *_ = encoded
    data = (folder / "in.clab").read_bytes()
    out = folder / "never.png"
    cases = {
        "truncated.clab": (data[: len(data) // 2], "truncated"),
        "flipped.clab": (data[:60] + bytes([data[60] ^ 1]) + data[61:], "checksum"),
        "version.clab": (data[:4] + b"\x07" + data[5:], "unsupported file format version 7"),
        "random.clab": (bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)), "not a CodecLab file"),
        "empty.clab": (b"", "not a CodecLab file"),
    }
    for name, (content, message) in cases.items():
        (folder / name).write_bytes(content)
        _assert_user_error(run_main("decode", folder / name, "-o", out, "-m", trained_model), message, out)


def test_wrong_model(encoded, tmp_path):
    folder, *_ = encoded
    import torch

    from codeclab.codecs import mbt2018_mean
    from codeclab.formats.model_file import export_model

    torch.manual_seed(123)
    other = tmp_path / "other.safetensors"
    export_model(mbt2018_mean(N=16, M=24), other)
    out = tmp_path / "x.png"
    _assert_user_error(run_main("decode", folder / "in.clab", "-o", out, "-m", other), "wrong model", out)
    _assert_user_error(run_main("decode", folder / "in.clab", "-o", out, "--models-dir", tmp_path, cwd=tmp_path), "no model with hash", out)


def test_missing_and_bad_inputs(trained_model, tmp_path):
    out = tmp_path / "o.clab"
    _assert_user_error(run_main("encode", tmp_path / "nope.png", "-m", trained_model, "-o", out), "image not found", out)
    (tmp_path / "text.png").write_text("not an image")
    _assert_user_error(run_main("encode", tmp_path / "text.png", "-m", trained_model, "-o", out), "cannot read image", out)
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    _assert_user_error(run_main("encode", tmp_path / "ok.png", "-m", tmp_path / "none.safetensors", "-o", out), "model file not found", out)
    _assert_user_error(run_main("encode", tmp_path / "ok.png", "-m", tmp_path / "ok.png", "-o", out), "not a CodecLab model file", out)
    _assert_user_error(run_main("decode", tmp_path / "none.clab", "-o", tmp_path / "x.png"), "file not found")
    _assert_user_error(run_main("info", tmp_path / "ok.png"), "not a CodecLab file")


MODES = [
    ("L", lambda: Image.fromarray(np.arange(40 * 30, dtype=np.uint8).reshape(30, 40)), "grayscale image converted to RGB"),
    ("RGBA", lambda: Image.new("RGBA", (33, 21), (10, 200, 30, 128)), "alpha dropped"),
    ("I;16", lambda: Image.fromarray((np.arange(25 * 19, dtype=np.uint16) * 100).reshape(19, 25)), "16-bit grayscale"),
    ("P", lambda: Image.new("RGB", (9, 70), (1, 2, 3)).convert("P"), "palette image converted"),
]


@pytest.mark.parametrize("mode, make, notice", MODES)
def test_odd_modes_are_converted_with_notice(mode, make, notice, tmp_path):
    image = make()
    assert image.mode == mode
    image.save(tmp_path / "in.png")
    notices = []
    pixels = read_image(tmp_path / "in.png", notice=notices.append)
    assert pixels.shape == (image.height, image.width, 3) and pixels.dtype == np.uint8
    assert len(notices) == 1 and notice in notices[0]


def test_grayscale_end_to_end(trained_model, tmp_path):
    MODES[0][1]().save(tmp_path / "in.png")
    proc = run_main("encode", tmp_path / "in.png", "-m", trained_model, "-o", tmp_path / "in.clab", check=True)
    assert "grayscale image converted to RGB" in proc.stderr
    run_main("decode", tmp_path / "in.clab", "-o", tmp_path / "out.png", "--models-dir", trained_model.parent, check=True)
    assert Image.open(tmp_path / "out.png").size == (40, 30)


def test_unknown_output_format_leaves_nothing(encoded, trained_model):
    folder, *_ = encoded
    out = folder / "out.xyz"
    _assert_user_error(run_main("decode", folder / "in.clab", "-o", out, "-m", trained_model), "unknown output image format", out)


def test_export_checkpoint(trained_run, trained_model, tmp_path):
    out = tmp_path / "exported.safetensors"
    run_main("export", trained_run / "checkpoints" / "last.ckpt", "-o", out, check=True)
    from codeclab.formats.model_file import read_metadata

    # The checkpoint holds the same final weights that train.py exported, and its training lambda.
    assert read_metadata(out)["weights_sha256"] == read_metadata(trained_model)["weights_sha256"]
    assert read_metadata(out)["lmbda"] == read_metadata(trained_model)["lmbda"] == "0.0067"
    # A model file re-exports to itself (its integer weights are already what they convert to).
    again = tmp_path / "again.safetensors"
    run_main("export", trained_model, "-o", again, check=True)
    assert read_metadata(again)["weights_sha256"] == read_metadata(trained_model)["weights_sha256"]
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    _assert_user_error(run_main("export", junk, "-o", tmp_path / "x.safetensors"), "not a CodecLab training checkpoint")
    _assert_user_error(run_main("export", tmp_path / "missing.ckpt", "-o", tmp_path / "x.safetensors"), "checkpoint not found")


def test_export_converts_a_compressai_state_dict_to_a_portable_model(tmp_path):
    from compressai.models import MeanScaleHyperprior

    from codeclab.formats.model_file import load_model, read_metadata

    torch.manual_seed(0)
    reference = MeanScaleHyperprior(N=16, M=24).eval()
    reference.update(force=True)
    state = tmp_path / "compressai.pth"
    torch.save(reference.state_dict(), state)
    out = tmp_path / "converted.safetensors"
    proc = run_main("export", state, "--compressai", "mbt2018-mean", "-o", out, check=True)
    assert "portable" in proc.stdout and "NOT" not in proc.stdout
    assert read_metadata(out)["portable"] == "true"
    codec = load_model(out)
    assert codec.config["N"] == 16 and codec.config["M"] == 24 and codec.entropy_model.arithmetic == "integer"
    # The transforms are compressai's, unchanged (their weights are stored as they were).
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        codec.configure_transforms(None, False)
        assert torch.allclose(codec.g_a(x), reference.g_a(x), atol=1e-5)
    compressed = codec.compress(x, CODER)
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, CODER), codec.quantize(x))
    _assert_user_error(run_main("export", state, "--compressai", "elic2022-official", "-o", tmp_path / "x.safetensors"),
                       "no compressai conversion")
    _assert_user_error(run_main("export", out, "--compressai", "mbt2018-mean", "-o", tmp_path / "x.safetensors"),
                       "not a compressai")


def test_a_reader_that_leaves_early_is_no_traceback(trained_model):
    """``codeclab info ... | head -1``: the pipe is closed before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run([sys.executable, "-m", "codeclab.cli", "info", str(trained_model)], stdout=write_end,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""


@pytest.mark.parametrize("flags, message", [(["--refine", "2", "--refine-lmbda"], "--refine-lmbda must be positive and finite"),
                                            (["--target-bpp"], "target bpp must be positive and finite")])
def test_rate_settings_must_be_positive_and_finite(tmp_path, flags, message):
    source = tmp_path / "in.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(source)
    for value in ("nan", "inf", "0"):
        proc = run_main("encode", source, "-m", ROOT / "models/zoo/mbt2018_mean_vr.safetensors", "-o", tmp_path / "o.clab", *flags, value)
        assert proc.returncode == 1 and proc.stderr.startswith(f"codeclab: error: {message}") and proc.stderr.count("\n") == 1
        assert not (tmp_path / "o.clab").exists()
