"""S2LIC: SwinV2 transforms, the codec, its configs, train.py and the command line."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from codeclab.codecs import build_codec, s2lic
from codeclab.coding import get_coder
from codeclab.compat.transforms import swin_v1_transforms
from codeclab.data.images import read_image
from codeclab.formats.container import unpack
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import export_model, load_model, read_metadata
from codeclab.transforms.swin import SwinV2Block, WindowAttentionV2
from tests.conftest import ROOT, run_main

CODER = get_coder()


@pytest.mark.parametrize("size", [(512, 768), (768, 512), (80, 112)])
def test_swin_transforms_any_size(size):
    torch.manual_seed(0)
    g_a, g_s, _ = swin_v1_transforms(8, 12, window=4, depths=[1, 2, 1], heads=[1, 2, 2], growth=4)
    with torch.no_grad():
        y = g_a(torch.rand(1, 3, *size))
        x_hat = g_s(y)
    assert y.shape == (1, 12, size[0] // 16, size[1] // 16) and x_hat.shape == (1, 3, *size)
    assert torch.isfinite(x_hat).all()


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("hw", [(13, 10), (3, 5), (8, 8)])
def test_swinv2_block_odd_maps(shift, hw):
    block = SwinV2Block(8, 2, window=4, shift=shift)
    x = torch.randn(2, *hw, 8)
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_windows_are_independent_and_padding_is_masked():
    """A plain (unshifted) block mixes tokens only inside a window; zero padding never acts as a key."""
    torch.manual_seed(0)
    block = SwinV2Block(8, 2, window=4, shift=False).eval()
    x = torch.randn(1, 8, 6, 8)  # windows: columns 0-3 (full) and 4-5 (+2 padded)
    changed = x.clone()
    changed[:, :, 0] += 1.0
    with torch.no_grad():
        a, b = block(x), block(changed)
        assert torch.equal(a[:, :, 4:], b[:, :, 4:])
        # Padded window = the same two columns alone in a 4-wide window with masked keys:
        mask = torch.zeros(2, 16, 16)
        mask[:, :, torch.tensor([2, 3, 6, 7, 10, 11, 14, 15])] = -100.0
        tokens = F.pad(x[:, :, 4:], (0, 0, 0, 2))  # [1, 8, 4, 8]
        windows = tokens.view(1, 2, 4, 4, 8).reshape(2, 16, 8)
        attn = block.attn(windows, 4, mask).view(1, 8, 4, 8)[:, :, :2]
        expected = x[:, :, 4:] + block.norm1(attn)
        expected = expected + block.norm2(block.mlp(expected))
    torch.testing.assert_close(a[:, :, 4:], expected, atol=1e-5, rtol=0)


def test_scaled_cosine_attention_follows_swinv2():
    """SwinV2 (Liu et al. 2022 and its official code), written out independently pair by pair:
    logits ``cos(q_i, k_j) * exp(min(tau, ln 100))`` with ``tau`` initialised to ln 10, plus
    ``16 sigmoid(MLP(c(dy), c(dx)))`` with ``c(d) = sign(d) log2(1 + |8 d / (w - 1)|) / log2 8``."""
    torch.manual_seed(0)
    heads, window, dim = 2, 4, 8
    attn = WindowAttentionV2(dim, heads, window)
    assert torch.equal(attn.logit_scale, torch.full((heads, 1, 1), math.log(10.0)))
    with torch.no_grad():
        attn.logit_scale.copy_(torch.tensor([10.0, 1.5]).view(2, 1, 1))  # head 0 hits the clamp at ln 100
        x = torch.randn(1, window * window, dim)
        out = attn(x, window, None)
        q, k, v = attn.qkv(x)[0].split(dim, dim=-1)

        def coordinate(d: int) -> float:
            scaled = 8 * d / (window - 1)
            return math.copysign(math.log2(1 + abs(scaled)) / math.log2(8), scaled) if d else 0.0

        positions = [(i // window, i % window) for i in range(window * window)]
        expected = torch.zeros(window * window, dim)
        for h, scale in enumerate([100.0, math.exp(1.5)]):
            part = slice(h * dim // heads, (h + 1) * dim // heads)
            logits = torch.zeros(window * window, window * window)
            for i, (yi, xi) in enumerate(positions):
                for j, (yj, xj) in enumerate(positions):
                    cosine = torch.dot(q[i, part], k[j, part]) / (q[i, part].norm() * k[j, part].norm())
                    table = attn.cpb_mlp(torch.tensor([coordinate(yi - yj), coordinate(xi - xj)]))
                    logits[i, j] = cosine * scale + 16 * torch.sigmoid(table[h])
            expected[:, part] = logits.softmax(-1) @ v[:, part]
        torch.testing.assert_close(out[0], attn.proj(expected), atol=1e-5, rtol=1e-5)


def test_config_is_json_and_rebuilds_the_codec(tmp_path):
    torch.manual_seed(0)
    codec = s2lic(N=16, M=40, window=4, depths=[1, 1, 1], heads=[1, 2, 2],
                  entropy={"name": "acgc", "num_slices": 2, "hidden": 16}).eval()
    assert json.loads(json.dumps(codec.config)) == codec.config
    rebuilt = build_codec("s2lic", codec.config)
    assert [k for k in rebuilt.state_dict()] == [k for k in codec.state_dict()]
    path = tmp_path / "m.safetensors"
    export_model(codec, path)  # ACGC has no integer path: written as it is, marked not portable
    assert read_metadata(path)["portable"] == "false"
    loaded = load_model(path)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded.decompress(codec.compress(x, CODER), CODER), codec.decompress(codec.compress(x, CODER), CODER))


def test_hydra_configs_compose_and_instantiate():
    import hydra
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        default = compose("train")
        assert "entropy" not in default and "entropy" not in default.codec
        assert default.codec._target_ == "codeclab.codecs.mbt2018_mean"
        paper = compose("train", overrides=["codec=s2lic"])
        assert (paper.codec.N, paper.codec.M, paper.codec.window) == (192, 320, 8)
        assert list(paper.codec.depths) == [1, 2, 3] and list(paper.codec.heads) == [4, 8, 16]
        assert paper.codec.entropy.name == "acgc" and paper.codec.entropy.num_slices == 10
        for name in ("hyperprior", "checkerboard", "charm", "acgc"):
            cfg = compose("train", overrides=["codec=s2lic_tiny", f"codec/entropy={name}"])
            codec = hydra.utils.instantiate(cfg.codec)
            assert codec.config["entropy"]["name"] == name
            json.dumps(codec.config)
        ladder = compose("train", overrides=["experiment=s2lic_paper"], return_hydra_config=True)
        assert ladder.codec.M == 320 and ladder.codec.entropy.name == "acgc"
        assert ladder.hydra.sweeper.params.lmbda.split(",") == ["0.0018", "0.0035", "0.0067", "0.0130", "0.0250", "0.0483"]


@pytest.fixture(scope="module")
def s2lic_run(tmp_path_factory):
    """``train.py codec=s2lic_tiny``: a few real training steps and the exported model file."""
    run_dir = tmp_path_factory.mktemp("s2lic_run")
    cmd = [
        sys.executable, "train.py", "codec=s2lic_tiny", "codec/entropy=acgc", "logger=csv", "trainer.max_steps=3",
        "trainer.enable_progress_bar=false", "data.patch_size=64", "data.batch_size=2", "data.val_patch_size=64",
        "data.val_max_images=1", "data.samples_per_epoch=6", f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_train_py_trains_s2lic(s2lic_run):
    metrics = (next(s2lic_run.glob("csv/*/metrics.csv"))).read_text()
    assert "val/real_bpp" in metrics.splitlines()[0]
    assert (s2lic_run / "model.safetensors").is_file()


def test_cli_round_trip_with_s2lic_model(s2lic_run, tmp_path):
    import skimage.data

    model = s2lic_run / "model.safetensors"
    image = skimage.data.coffee()[:77, :131]  # not a multiple of 64
    Image.fromarray(image).save(tmp_path / "in.png")
    run_main("encode", tmp_path / "in.png", "-m", model, "-o", tmp_path / "in.clab", check=True)
    run_main("decode", tmp_path / "in.clab", "-o", tmp_path / "out.png", "-m", model, check=True)
    header, streams = unpack((tmp_path / "in.clab").read_bytes())
    assert header.codec_id == "s2lic" and len(streams) == 2
    # Another process encodes to the same bytes, and decodes to exactly what this one does.
    codec = load_model(model)
    assert encode_image(codec, image) == (tmp_path / "in.clab").read_bytes()
    decoded = read_image(tmp_path / "out.png")
    assert decoded.shape == image.shape
    assert np.array_equal(decode_image((tmp_path / "in.clab").read_bytes(), codec), decoded)


def test_transforms_follow_the_released_s2lic_file():
    """code/s2lic.py: g_a = enh, conv 5x5/2, RSTB, [conv 3x3/2, RSTB] x 2, conv 3x3/2; g_s = [deconv
    3x3/2, RSTB] x 3, subpel_conv3x3(N, 3, 2), reverse enh; depths 1-2-3 / 3-2-1, heads 4-8-16 /
    16-8-4; drop_path_rate 0.1 over the listed depths [1, 2, 3, 1, 1]; SwinV2 initialisation."""
    from torch import nn

    from codeclab.transforms.swin import EnhancementBlock, ResidualSwinV2Stage, drop_path_rates, swin_transforms

    pair = swin_transforms(192, 320)
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in pair.g_a
             if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 192, 5, 2), (192, 192, 3, 2), (192, 192, 3, 2), (192, 320, 3, 2)]
    deconvs = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in pair.g_s
               if isinstance(m, nn.ConvTranspose2d)]
    assert deconvs == [(320, 192, 3, 2), (192, 192, 3, 2), (192, 192, 3, 2)]
    subpel = pair.g_s[-2]
    assert subpel[0].kernel_size == (3, 3) and subpel[0].out_channels == 12 and subpel[1].upscale_factor == 2
    assert isinstance(pair.g_a[0], EnhancementBlock) and isinstance(pair.g_s[-1], EnhancementBlock)
    assert pair.g_a[0].layers[0].convs[0].in_channels == 3 and pair.g_a[0].layers[1].in_channels == 64
    stages = [[(len(m.blocks), m.blocks[0].attn.heads) for m in g if isinstance(m, ResidualSwinV2Stage)]
              for g in (pair.g_a, pair.g_s)]
    assert stages == [[(1, 4), (2, 8), (3, 16)], [(3, 16), (2, 8), (1, 4)]]
    step = 0.1 / 7
    analysis, synthesis = drop_path_rates((1, 2, 3), 0.1)
    assert [len(r) for r in analysis] == [1, 2, 3] and [len(r) for r in synthesis] == [3, 2, 1]
    assert sum(analysis, []) == pytest.approx([k * step for k in range(6)])
    assert sum(synthesis, []) == pytest.approx([k * step for k in range(2, 8)])
    block = pair.g_a[2].blocks[0]
    assert torch.equal(block.norm1.weight, torch.zeros(192)) and torch.equal(block.norm2.bias, torch.zeros(192))
    assert block.mlp[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert pair.g_s[-2 - 1].blocks[0].drop_path == pytest.approx(0.1)


def test_enhancement_block_adds_a_fifth_of_its_branch():
    from codeclab.transforms.swin import EnhancementBlock

    torch.manual_seed(0)
    block = EnhancementBlock(8)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.1)
        x = torch.rand(1, 3, 16, 16)
        torch.testing.assert_close(block(x) - x, 0.2 * block.layers(x))
    assert EnhancementBlock(8).layers[-1].convs[-1].weight.abs().sum() == 0  # starts as the identity
