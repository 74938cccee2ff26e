"""McQuic codec: exact index coding through the rANS table mode, the fixed rate of the configured
operating point, shapes per level, the logits formula, the frequency EMA, dead-codeword
reassignment, LAMB, training steps and the image-file round trip."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from codeclab.codecs import McQuic, build_codec, fixed_rate_bpp, mcquic
from codeclab.coding import get_coder
from codeclab.entropy_models.mcquic import McQuicEntropyModel
from codeclab.formats.file_coding import pad_to_multiple
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import export_model, load_model
from codeclab.training.lamb import Lamb
from codeclab.training.mcquic import McQuicModule
from tests.conftest import ROOT, image_tensor

CODER = get_coder()

TINY = dict(channels=16, m=2, k=[32, 16])


def tiny_codec(seed=0, skew=True) -> McQuic:
    torch.manual_seed(seed)
    codec = mcquic(**TINY)
    if skew:  # learned-looking, skewed tables
        for level in codec.quantizer.levels:
            level.freq_ema.copy_(torch.rand(level.freq_ema.shape) ** 4 * 100)
            level.counts.copy_(McQuicEntropyModel.counts_from(level.freq_ema))
    return codec.eval()


@pytest.mark.parametrize("coder", ["codeclab", "compressai"])
def test_indices_round_trip_exactly(photo, coder):
    codec, coder = tiny_codec(), get_coder(coder)
    x = pad_to_multiple(image_tensor(photo), codec.downsampling)
    with torch.no_grad():
        y = codec.g_a(x)
        codes = codec.quantizer.encode_indices(y)
        streams, y_hat = codec.quantizer.compress(y, coder)
        decoded = codec.quantizer.decompress_indices(streams, tuple(y.shape[-2:]), coder)
    assert len(streams) == len(TINY["k"])
    assert all(c.unique().numel() > 1 for c in codes)  # distinct indices occur at every level
    for ours, theirs in zip(codes, decoded):
        assert torch.equal(ours, theirs)
    # The decoder reproduces the encoder-side restoration and reconstruction bit for bit.
    compressed = codec.compress(x, coder)
    assert torch.equal(codec.decompress_y(compressed.strings, compressed.size, coder), y_hat)
    assert torch.equal(codec.decompress(compressed, coder), codec.synthesis(y_hat))


def test_fixed_rate_of_the_default_config():
    cfg = OmegaConf.load(ROOT / "configs" / "codec" / "mcquic.yaml")
    rate = fixed_rate_bpp(cfg.m, list(cfg.k))
    assert rate == pytest.approx(2 * 13 / 16**2 + 2 * 11 / 32**2 + 2 * 9 / 64**2)
    assert round(rate, 3) == 0.127  # 0.12744: the paper's 0.1277 less its header
    with torch.device("meta"):
        codec = build_codec("mcquic", {k: v for k, v in OmegaConf.to_container(cfg).items() if k not in ("_target_", "defaults")})
    assert codec.fixed_rate == rate and codec.downsampling == 64
    assert [tuple(lv.quantizer.codebook.shape) for lv in codec.quantizer.levels] == [(2, 8192, 64), (2, 2048, 64), (2, 512, 64)]
    # Uniform tables code at the fixed rate (up to the stream overhead).
    small = tiny_codec(skew=False)
    x = torch.rand(1, 3, 128, 256)
    bits = 8 * sum(map(len, small.compress(x, CODER).strings))
    expected = fixed_rate_bpp(2, TINY["k"]) * 128 * 256
    assert expected <= bits <= expected + 8 * 16 * len(TINY["k"])  # rANS state flush and stream header


def test_shapes_per_level_and_other_operating_points():
    codec = mcquic(channels=16, m=4, k=[16, 8, 4]).train()
    x = torch.rand(2, 3, 128, 64)
    out = codec(x)
    assert out["x_hat"].shape == x.shape and codec.downsampling == 64
    assert [tuple(c.shape) for c in out["codes"]] == [(2, 4, 8, 4), (2, 4, 4, 2), (2, 4, 2, 1)]
    assert [tuple(lg.shape) for lg in out["logits"]] == [(2, 4, 8, 4, 16), (2, 4, 4, 2, 8), (2, 4, 2, 1, 4)]
    assert [tuple(v.shape) for v in out["likelihoods"].values()] == [(2, 4, 8, 4), (2, 4, 4, 2), (2, 4, 2, 1)]
    out["x_hat"].mean().backward()  # straight-through Gumbel: every level's encoder side gets gradients
    for lv in codec.quantizer.levels:
        assert lv.stage_encoder[0].branch[1].weight.grad.abs().sum() > 0
        assert lv.quantizer.codebook.grad.abs().sum() > 0
    assert codec.g_a[0].weight.grad.abs().sum() > 0
    assert codec.fixed_rate == pytest.approx(4 * 4 / 256 + 4 * 3 / 1024 + 4 * 2 / 4096)


def test_logits_formula():
    torch.manual_seed(1)
    q = mcquic(**TINY).quantizer.levels[0].quantizer
    with torch.no_grad():
        q.temperature.copy_(torch.tensor([0.5, 2.0]).reshape(2, 1, 1, 1))
    x = torch.randn(2, 16, 3, 5)
    logits = q.logits(x)
    for g in range(2):
        feats = x[:, 8 * g : 8 * (g + 1)].permute(0, 2, 3, 1)  # [n, h, w, d]
        direct = -((feats[..., None, :] - q.codebook[g]) ** 2).sum(-1) / math.sqrt(32) * q.temperature[g, 0, 0, 0]
        assert torch.allclose(logits[:, g], direct, atol=1e-4)
    assert torch.equal(q.indices(x), logits.argmax(-1))
    assert torch.allclose(q.embed(q.indices(x)), q.dequantize(torch.nn.functional.one_hot(q.indices(x), 32).float()))


def test_frequency_ema_update_of_older_files():
    """CodecLab's first EMA (``ema_rule="counts"``, McQuic files before format 6); the official
    normalised rule is pinned in tests/entropy_models/test_paper_details.py."""
    model = McQuicEntropyModel(channels=4, m=1, k=[4], ema=0.9, ema_rule="counts")
    level = model.levels[0]
    level.freq_ema.copy_(torch.tensor([[5.0, 5.0, 0.5, 2.0]]))
    codes = [torch.tensor([0, 0, 0, 0, 0, 0, 0, 2, 2, 2]).reshape(1, 1, 2, 5)]  # counts 7, 0, 3, 0
    model.update_frequencies(codes)
    # A count above the average replaces it; otherwise f <- 0.1 count + 0.9 f.
    assert torch.allclose(level.freq_ema, torch.tensor([[7.0, 4.5, 3.0, 1.8]]))
    expected = torch.round(level.freq_ema / level.freq_ema.sum() * 65536).clamp_min(1).int()
    assert torch.equal(level.counts, expected)


def test_dead_codewords_take_the_most_used_ones_with_heads_rule():
    """``reassign_rule="head"``: the most used codewords in order (the release draws among them:
    tests/entropy_models/test_paper_details.py)."""
    torch.manual_seed(2)
    model = McQuicEntropyModel(channels=4, m=2, k=[6], reassign_rule="head")
    level = model.levels[0]
    level.freq_ema.copy_(torch.tensor([[9.0, 0.0, 4.0, 0.0, 1.0, 7.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]))
    before = level.quantizer.codebook.detach().clone()
    fraction = model.reassign_dead_codewords()
    after = level.quantizer.codebook.detach()
    assert torch.equal(after[0, 1], before[0, 0]) and torch.equal(after[0, 3], before[0, 5])  # most used first
    assert torch.equal(after[0, [0, 2, 4, 5]], before[0, [0, 2, 4, 5]]) and torch.equal(after[1], before[1])
    assert fraction == pytest.approx(2 / 12)


@pytest.mark.parametrize("debias", [False, True])
def test_lamb_update_against_its_formula(debias):
    """torch-optimizer's Lamb (CodecLab's first McQuic optimiser, kept as an option; McQuic's own is apex's
    FusedLAMB, tests/training/test_paper_recipes.py): no bias correction by default; debias=True: bias-corrected."""
    torch.manual_seed(3)
    w0 = torch.randn(5, 3)
    grads = [torch.randn(5, 3), torch.randn(5, 3)]
    p = torch.nn.Parameter(w0.clone())
    opt = Lamb([p], lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1, **({"debias": True} if debias else {}))
    w, m, v = w0.clone(), torch.zeros(5, 3), torch.zeros(5, 3)
    for t, g in enumerate(grads, 1):
        p.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        m_hat, v_hat = (m / (1 - 0.9**t), v / (1 - 0.99**t)) if debias else (m, v)
        u = m_hat / (v_hat.sqrt() + 1e-6) + 0.1 * w
        w = w - 0.01 * (w.norm().clamp(max=10) / u.norm()) * u
        assert torch.allclose(p.detach(), w, atol=1e-6)


def test_training_steps_lower_the_distortion():
    torch.manual_seed(4)
    module = McQuicModule(mcquic(**TINY), cosine_weight=0.01, reassign_every=5)
    optimizer = Lamb(module.codec.parameters(), lr=2e-3)
    x = torch.rand(4, 3, 64, 64) * 0.5 + torch.linspace(0, 0.5, 64)  # a smooth, learnable batch
    module.codec.train()
    first = module.losses(x)["distortion"]
    for step in range(12):
        optimizer.zero_grad()
        module.losses(x)["loss"].backward()
        optimizer.step()
        if step % 5 == 4:
            module.codec.quantizer.reassign_dead_codewords()
    module.codec.eval()
    with torch.no_grad():
        assert module.losses(x)["distortion"] < first


def test_image_file_round_trip_through_a_model_file(photo, tmp_path):
    codec = tiny_codec()
    path = tmp_path / "mcquic.safetensors"
    export_model(codec, path)
    loaded = load_model(path)
    assert type(loaded) is McQuic and loaded.codec_id == "mcquic"
    for a, b in zip(codec.quantizer.levels, loaded.quantizer.levels):
        assert torch.equal(a.counts, b.counts)
    data = encode_image(loaded, photo)
    image = decode_image(data, loaded)
    assert image.shape == photo.shape and image.dtype == np.uint8
    assert np.array_equal(image, decode_image(encode_image(codec, photo), codec))
    assert np.array_equal(image, decode_image(data, load_model(path)))


def test_train_py_trains_and_exports(tmp_path):
    cmd = [sys.executable, "train.py", "codec=mcquic_tiny", "logger=csv", "trainer.max_steps=3", "data.patch_size=64",
           "data.batch_size=2", "data.val_patch_size=64", "data.val_max_images=1", "data.samples_per_epoch=6",
           "module.reassign_every=2", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, WANDB_MODE="disabled"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    codec = load_model(tmp_path / "model.safetensors")
    assert codec.codec_id == "mcquic" and codec.config["k"] == [32, 16]
    assert any(int(lv.counts.max()) > int(lv.counts.min()) for lv in codec.quantizer.levels)  # the EMA trained the tables
