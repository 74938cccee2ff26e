"""SGA latent refinement (Yang, Bamler & Mandt 2020): the reference's constants, its rounding
distribution, and real files from refined latents that any decoder reads exactly."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codeclab.cli import main
from codeclab.codecs import build_codec, mbt2018_mean
from codeclab.codecs.refinement import (
    LEARNING_RATE, LOGIT_CLIP, REFERENCE_ITERATIONS, SGASchedule, refine_latents, sga_round,
)
from codeclab.coding import get_coder
from codeclab.formats.file_coding import codec_input
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import export_model, load_model, read_metadata
from tests.conftest import ROOT, run_main

CODER = get_coder()

ZOO = ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors"


def test_reference_constants():
    """sga.py: Adam lr 0.005, 2000 iterations, 'exp0' with ub 0.5, r 1e-3, t0 700, lb 1e-8, eps 1e-5."""
    assert (LEARNING_RATE, REFERENCE_ITERATIONS, LOGIT_CLIP) == (5e-3, 2000, 1e-5)
    schedule = SGASchedule()
    assert (schedule.iterations, schedule.upper, schedule.rate, schedule.warmup, schedule.lower) == (2000, 0.5, 1e-3, 700, 1e-8)
    assert schedule.temperature(0) == schedule.temperature(700) == 0.5
    assert schedule.temperature(1999) == pytest.approx(0.5 * math.exp(-1e-3 * 1299))
    assert SGASchedule.stretched(2000) == schedule


def test_stretched_schedule_keeps_warmup_share_and_final_temperature():
    short = SGASchedule.stretched(500)
    assert short.temperature(174) == 0.5 and short.temperature(176) < 0.5
    assert short.temperature(500) == pytest.approx(SGASchedule().temperature(2000))
    with pytest.raises(ValueError):
        SGASchedule.stretched(0)


def _reference_gumbel_softmax(v, tau, generator):
    """The reference's draw, literally: a two-class Gumbel-softmax (RelaxedOneHotCategorical at
    temperature tau) over logits -atanh(distance)/tau for floor and ceil."""
    down, up = torch.floor(v), torch.ceil(v)
    logits = torch.stack([-torch.atanh((v - down).clamp(-1 + 1e-5, 1 - 1e-5)) / tau,
                          -torch.atanh((up - v).clamp(-1 + 1e-5, 1 - 1e-5)) / tau], -1)
    gumbel = -torch.log(-torch.log(torch.rand(logits.shape, generator=generator).clamp(1e-12, 1 - 1e-12)))
    weights = F.softmax((logits + gumbel) / tau, -1)
    return (torch.stack([down, up], -1) * weights).sum(-1)


@pytest.mark.parametrize("tau", [0.5, 0.2])
def test_sga_round_draws_the_reference_distribution(tau):
    v = torch.full((200_000,), 2.3)
    ours = sga_round(v, None, tau, torch.Generator().manual_seed(0))
    reference = _reference_gumbel_softmax(v, tau, torch.Generator().manual_seed(1))
    assert ours.min() >= 2.0 and ours.max() <= 3.0
    assert ours.mean().item() == pytest.approx(reference.mean().item(), abs=3e-3)
    assert ours.std().item() == pytest.approx(reference.std().item(), abs=3e-3)
    assert ours.mean().item() < 2.5  # nearer the floor: rounded down more often


def test_sga_round_is_on_the_offset_grid_and_differentiable():
    v = torch.tensor([0.9, -1.2, 3.0], requires_grad=True)
    offsets = torch.tensor([0.25, 0.5, -0.3])
    out = sga_round(v, offsets, 1e-3, torch.Generator().manual_seed(0))  # cold: the nearest grid point
    assert torch.allclose(out, torch.round(v.detach() - offsets) + offsets, atol=1e-4)
    warm = sga_round(v, offsets, 0.5, torch.Generator().manual_seed(0))
    warm.sum().backward()
    assert v.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def zoo_codec():
    return load_model(ZOO)


def test_refinement_lowers_the_rate_distortion_loss_and_refines_z(zoo_codec, photo):
    x = codec_input(photo, zoo_codec.downsampling)
    result = refine_latents(zoo_codec, x, 40, SGASchedule.stretched(30), size=photo.shape[:2])
    assert result.final_loss < result.initial_loss
    y0 = zoo_codec.analysis(x)
    assert not torch.equal(result.y, y0)
    assert not torch.equal(result.side, zoo_codec.entropy_model.side_latent(y0))


def test_refined_latents_decode_exactly(zoo_codec, photo):
    """The refined y and z go through the ordinary coder: the decoder's y_hat equals the encoder's."""
    x = codec_input(photo, zoo_codec.downsampling)
    result = refine_latents(zoo_codec, x, 20, SGASchedule.stretched(10), size=photo.shape[:2])
    zoo_codec.ensure_tables()
    streams, y_hat = zoo_codec.entropy_model.compress(result.y, CODER, 20, result.side)
    decoded = zoo_codec.decompress_y(streams, tuple(x.shape[-2:]), CODER, 20)
    assert torch.equal(decoded, y_hat)


def test_refined_file_is_an_ordinary_file(zoo_codec, photo):
    plain = encode_image(zoo_codec, photo, 40)
    refined = encode_image(zoo_codec, photo, 40, refine=30)
    assert refined != plain and refined[:8] == plain[:8]
    image = decode_image(refined, zoo_codec)
    assert image.shape == photo.shape and image.dtype == np.uint8


def test_fixed_rate_refinement_needs_a_lambda(photo):
    codec = build_codec("bmshj2018-factorized", {"N": 8, "M": 8}).eval()
    x = codec_input(photo, codec.downsampling)
    with pytest.raises(ValueError, match="training lambda"):
        refine_latents(codec, x, None, SGASchedule.stretched(2))
    result = refine_latents(codec, x, None, SGASchedule.stretched(2), lmbda=0.01)
    assert result.side is None and result.y.shape == codec.analysis(x).shape


def test_refinement_uses_the_training_lambda_a_fixed_rate_model_file_records(tmp_path, photo):
    from PIL import Image

    torch.manual_seed(0)
    codec = mbt2018_mean(8, 12)
    codec.training_lmbda = 0.013
    path = tmp_path / "fixed.safetensors"
    export_model(codec, path)
    loaded = load_model(path)
    assert read_metadata(path)["lmbda"] == "0.013" and loaded.training_lmbda == 0.013
    x = codec_input(photo, loaded.downsampling)
    recorded = refine_latents(loaded, x, None, SGASchedule.stretched(3))
    assert torch.equal(recorded.y, refine_latents(loaded, x, None, SGASchedule.stretched(3), lmbda=0.013).y)
    assert not torch.equal(recorded.y, refine_latents(loaded, x, None, SGASchedule.stretched(3), lmbda=0.5).y)
    Image.fromarray(photo).save(tmp_path / "in.png")
    assert main(["encode", str(tmp_path / "in.png"), "-m", str(path), "-o", str(tmp_path / "a.clab"), "--refine", "2"]) == 0
    variable = mbt2018_mean(8, 12, rate_levels=4)
    variable.training_lmbda = 0.013  # a variable-rate model's levels carry their lambdas: not recorded
    export_model(variable, tmp_path / "vr.safetensors")
    assert "lmbda" not in read_metadata(tmp_path / "vr.safetensors")


def test_cli_refine(tmp_path, photo):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(photo).save(source)
    proc = run_main("encode", source, "-m", ZOO, "-o", tmp_path / "a.clab", "--level", "30", "--refine", "20", check=True)
    assert "bpp" in proc.stdout
    run_main("decode", tmp_path / "a.clab", "-o", tmp_path / "a.png", "-m", ZOO, check=True)
    assert np.asarray(Image.open(tmp_path / "a.png")).shape == photo.shape


@pytest.mark.parametrize("extra, message", [
    (["--refine", "-1", "--level", "3"], "iterations >= 0"),
    (["--refine", "5", "--target-bpp", "0.5"], "--refine with --target-bpp"),
    (["--refine", "5", "--level", "3", "--refine-lmbda", "0"], "must be positive"),
])
def test_cli_refine_errors_are_one_line(tmp_path, photo, extra, message):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(photo).save(source)
    proc = run_main("encode", source, "-m", ZOO, "-o", tmp_path / "a.clab", *extra)
    assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a.clab").exists()


def test_cli_refuses_refining_models_without_a_relaxed_pass(tmp_path, photo):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(photo).save(source)
    golden = ROOT / "tests" / "golden"
    fixed = run_main("encode", source, "-m", golden / "mbt2018-mean.safetensors", "-o", tmp_path / "a.clab", "--refine", "3")
    assert fixed.returncode == 1 and fixed.stderr == (  # an older file, without a training lambda
        "codeclab: error: mbt2018-mean is a fixed-rate model whose file records no training lambda: --refine needs it (--refine-lmbda)\n")
    vq = run_main("encode", source, "-m", golden / "vqgan.safetensors", "-o", tmp_path / "b.clab", "--refine", "3")
    assert vq.returncode == 1 and "cannot be refined" in vq.stderr


@pytest.mark.parametrize("name", ["s2lic-hyperprior", "s2lic-checkerboard", "s2lic-charm", "s2lic-acgc", "bmshj2018-hyperprior"])
def test_context_models_refine_and_decode_exactly(name, photo):
    """Every parallel context loop runs the relaxed pass; the refined latents round-trip exactly."""
    codec = load_model(ROOT / "tests" / "golden" / f"{name}.safetensors")
    x = codec_input(photo, codec.downsampling)
    result = refine_latents(codec, x, None, SGASchedule.stretched(3), lmbda=0.01, size=photo.shape[:2])
    assert np.isfinite(result.final_loss)
    codec.ensure_tables()
    streams, y_hat = codec.entropy_model.compress(result.y, CODER, None, result.side)
    assert torch.equal(codec.decompress_y(streams, tuple(x.shape[-2:]), CODER), y_hat)


def test_refinement_optimiser_is_adam_at_the_reference_learning_rate(monkeypatch):
    """sga.py optimises the latents with ``Adam(lr=0.005)``: the optimiser refine_latents builds,
    seen at its construction (the constant written out here, not LEARNING_RATE)."""
    from codeclab.codecs import mbt2018_mean
    from codeclab.codecs import refinement

    built = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            built.append(kwargs)
            super().__init__(params, **kwargs)

    monkeypatch.setattr(refinement.torch.optim, "Adam", RecordingAdam)
    torch.manual_seed(0)
    codec = mbt2018_mean(N=8, M=12).eval()
    refine_latents(codec, torch.rand(1, 3, 64, 64), schedule=SGASchedule.stretched(2), lmbda=0.01)
    assert len(built) == 1 and built[0].get("lr") == 0.005 and set(built[0]) == {"lr"}
