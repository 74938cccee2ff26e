"""SwinJSCC as the official semcomm/SwinJSCC: the model sizes of the released configurations,
the ModNets, the top-C channel selection, the CBR, Swin V1 blocks, the training loss and lists,
the network file, train.py's smoke run and eval_jscc.py's separation baseline."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codeclab.jscc import SwinJSCC, swinjscc
from codeclab.transforms.swin import SwinV1Block
from codeclab.training.jscc import JSCCModule, jscc_loss

ROOT = Path(__file__).resolve().parents[2]
TINY = {"embed_dims": (16, 24), "depths": (1, 1), "heads": (2, 2), "window": 4, "channels": (4, 8, 16), "snrs": (0, 10)}


def _parameters(**config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in SwinJSCC(**config).parameters())


def test_the_released_configurations_have_their_sizes():
    # The official HR base model (embed 128-320, depths 2/2/6/2): with both ModNets (SA+RA),
    # with the Channel ModNet and a C = 96 head (SA), and without either.
    assert _parameters() == 33_073_488
    assert _parameters(rate_adaptive=False, channels=(96,)) == 28_203_024
    assert _parameters(rate_adaptive=False, snr_adaptive=False, channels=(96,)) == 18_338_384
    model = SwinJSCC.__init__.__defaults__
    assert model[:4] == ((128, 192, 256, 320), (2, 2, 6, 2), (4, 6, 8, 10), 8)
    assert model[-2:] == ((1, 4, 7, 10, 13), (32, 64, 96, 128, 192))  # the README's training lists


def test_modnet_structure_is_the_official_one():
    assert (swinjscc.MODNET_LAYERS, swinjscc.MODNET_WIDTH_FACTOR, swinjscc.PATCH_SIZE) == (7, 1.5, 2)
    modnet = swinjscc.ModNet(32)
    assert [(m.in_features, m.out_features) for m in modnet.linears] == [(32, 48)] + [(48, 48)] * 6 + [(48, 32)]
    assert [type(m).__name__ for m in modnet.modulators[0]] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Sigmoid"]
    assert modnet.modulators[0][0].in_features == 1  # the raw SNR in dB or the raw channel count
    x = torch.randn(2, 5, 32, requires_grad=True)
    gate = modnet.gate(x, torch.full((2, 1), 10.0))
    assert gate.shape == x.shape and bool(((gate > 0) & (gate < 1)).all())
    gate.sum().backward()
    assert x.grad is None  # the ModNet sees detached features


def test_rate_adaptation_sends_the_c_channels_with_the_largest_summed_gates():
    torch.manual_seed(0)
    model = SwinJSCC(**TINY).eval()
    x = torch.rand(2, 3, 32, 48)
    sent, mask = model.encode(x, 10.0, 8)
    assert mask.shape == (2, 1, 1, 24) and mask.sum(dim=-1).tolist() == [[[8.0]], [[8.0]]]
    assert torch.all(sent[..., mask[0, 0, 0] == 0][0] == 0)
    output, cbr = model(x, 10.0, 8)
    assert output.shape == x.shape and cbr == pytest.approx(8 / (2 * 3 * 4**2))  # C / (2 * 3 * 2^(2d)), d = 2 here
    # Channel c's gate summed over tokens grows with c: the last 8 channels are the ones sent.
    ramp = torch.linspace(0.01, 0.99, 24).expand(2, 96, 24)
    model.encoder_rate_modnet.gate = lambda tokens, side: ramp
    _, mask = model.encode(x, 10.0, 8)
    assert mask[0, 0, 0].nonzero().flatten().tolist() == list(range(16, 24))


def test_cbr_of_the_hr_model_is_c_over_1536():
    model = SwinJSCC(embed_dims=(8, 8, 8, 32), depths=(1, 1, 1, 1), heads=(1, 1, 1, 1), channels=(32,))
    _, cbr = model(torch.rand(1, 3, 64, 64), 5.0, 32)
    assert cbr == pytest.approx(1 / 48)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 3, 40, 64), 5.0, 32)
    with pytest.raises(ValueError, match="channels must be in 1..32"):
        model(torch.rand(1, 3, 64, 64), 5.0, 33)


def test_swin_v1_block_is_pre_norm_with_a_relative_position_table():
    block = SwinV1Block(16, 2, 4, shift=True)
    assert block.attn.relative_position_bias_table.shape == ((2 * 4 - 1) ** 2, 2)
    assert block.attn.scale == pytest.approx(8**-0.5)
    x = torch.randn(1, 8, 8, 16)
    torch.nn.init.zeros_(block.attn.proj.weight)
    torch.nn.init.zeros_(block.attn.proj.bias)
    torch.nn.init.zeros_(block.mlp[2].weight)
    torch.nn.init.zeros_(block.mlp[2].bias)
    assert torch.equal(block(x), x)  # both branches residual
    small = block.attn.position_bias(2)  # a 2x2 effective window: the table's centre
    table = block.attn.relative_position_bias_table.view(7, 7, 2)
    assert torch.equal(small[:, 0, 0], table[3, 3]) and torch.equal(small[:, 0, 3], table[2, 2])


def test_the_official_initialisation_leaves_the_modnets_at_pytorch_defaults():
    torch.manual_seed(0)
    model = SwinJSCC(**TINY)
    assert model.encoder_stages[1][0].reduction.bias is None and model.decoder_stages[0][1].increment.bias is None
    block = model.encoder_stages[0][0][0]
    with torch.no_grad():
        assert float(block.attn.qkv.bias.abs().max()) == 0  # backbone: zero biases
        assert float(model.encoder_snr_modnet.linears[0].bias.abs().max()) > 0  # ModNet: PyTorch's default
        assert float(block.mlp[0].weight.std()) == pytest.approx(swinjscc.INIT_STD, rel=0.15)  # truncated normal


def test_training_loss_is_the_mse_on_the_255_scale_of_the_clamped_output():
    image = torch.full((1, 3, 2, 2), 0.5)
    assert jscc_loss(torch.full_like(image, 1.5), image).item() == pytest.approx((0.5 * 255) ** 2)
    module = JSCCModule(SwinJSCC(**TINY))
    loss = module.training_step(torch.rand(2, 3, 16, 16), 0)
    assert loss.ndim == 0 and loss.item() > 0


def test_swinjscc_cpu_experiment_keeps_the_official_recipe_where_it_can():
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        official = compose("train", overrides=["experiment=swinjscc"])
        cpu = compose("train", overrides=["experiment=swinjscc_cpu"])
    assert official.get("codec") is None and official.optim.optimizer.lr == 1e-4 and official.optim.lr_scheduler is None
    assert (official.data.patch_size, official.data.batch_size, official.data.flip) == (256, 16, False)
    assert list(cpu.module.network.snrs) == [0, 5, 10, 15, 20] and list(cpu.module.network.channels) == [32, 64, 96, 128]


@pytest.mark.parametrize("experiment", ["swinjscc", "rbqe"])
def test_train_py_runs_the_experiment_and_writes_a_network_file(tmp_path, experiment):
    from codeclab.formats.network_file import load_network

    cmd = [sys.executable, "train.py", f"experiment={experiment}", "trainer.max_steps=2", "data=default",
           "data.patch_size=64", "data.batch_size=2", "data.samples_per_epoch=4", "data.val_patch_size=64",
           "data.val_max_images=1", "data.preload=false", "trainer.val_check_interval=null",
           "trainer.check_val_every_n_epoch=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained 2 steps" in proc.stdout
    kind = "postfilter" if experiment == "rbqe" else "jscc"
    assert load_network(tmp_path / "model.safetensors", kind).config


def test_separation_bound_takes_the_best_file_the_capacity_carries():
    from codeclab.evaluation import jscc

    image = np.full((16, 16, 3), 100, np.uint8)
    source = [{"image": "a", "level": 0, "bpp": 0.1, "psnr": 25.0}, {"image": "a", "level": 1, "bpp": 0.5, "psnr": 31.0}]
    images = [("a", image)]
    # 3 * CBR * log2(1 + SNR) bits per pixel: CBR 1/12 at SNR 10 dB carries 0.865 bpp.
    assert jscc.separation_psnr(source, images, "awgn", 1 / 12, 10.0) == 31.0
    assert 3 / 48 * math.log2(1 + 10**0.5) < 0.5  # CBR 1/48 at 5 dB: only the smaller file
    assert jscc.separation_psnr(source, images, "awgn", 1 / 48, 5.0) == 25.0
    grey = 10 * math.log10(255**2 / 28**2)
    assert jscc.separation_psnr(source, images, "awgn", 1 / 48, -10.0) == pytest.approx(grey)  # nothing fits
    # A scheme designed for 10 dB falls off the cliff below it and does not improve above it.
    assert jscc.cliff_psnr(source, images, "awgn", 1 / 12, 10.0, 20.0) == 31.0
    assert jscc.cliff_psnr(source, images, "awgn", 1 / 12, 10.0, 9.0) == pytest.approx(grey)


def test_eval_jscc_writes_its_report(tmp_path):
    from codeclab.formats.network_file import save_network

    torch.manual_seed(0)
    save_network(SwinJSCC(**TINY), "jscc", tmp_path / "m.safetensors")
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(images / "a.png")
    cmd = [sys.executable, "eval_jscc.py", f"model={tmp_path / 'm.safetensors'}", f"test_dir={images}", "snrs=[0,10]",
           "source_model=null", f"hydra.run.dir={tmp_path / 'out'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.count("| 0 |") == 3 and (tmp_path / "out" / "psnr_vs_snr.png").is_file()
    bad = subprocess.run([sys.executable, "eval_jscc.py", f"model={tmp_path / 'images' / 'a.png'}", f"hydra.run.dir={tmp_path / 'x'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "not a CodecLab network file" in bad.stderr and "Traceback" not in bad.stderr
