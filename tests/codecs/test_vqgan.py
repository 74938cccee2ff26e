"""VQGAN codec: vector quantisation, exact index coding with all three index models, taming
checkpoint layout, adversarial training through train.py, the K-means ladder, the command line."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.codecs import VQGAN, build_codec, load_taming_state_dict, vqgan
from codeclab.coding import get_coder
from codeclab.entropy_models.index_models import INDEX_MODEL_IDS, INDEX_MODELS, group_map
from codeclab.errors import CodecLabError
from codeclab.formats.file_coding import pad_to_multiple
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import export_model, load_model
from tests.conftest import ROOT, image_tensor, run_main

CODER = get_coder()

TINY = dict(ch=16, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=1, attn_resolutions=[4], resolution=64, z_channels=16,
            embed_dim=8, n_embed=64, norm_groups=4, prior_dim=32, prior_depth=1, prior_heads=2, prior_groups=8)


def tiny_codec(seed=0, **overrides):
    torch.manual_seed(seed)
    codec = vqgan(**{**TINY, **overrides})
    # Spread the codebook over the encoder's output range so many indices occur.
    with torch.no_grad():
        z = codec.encode_latent(torch.rand(4, 3, 64, 64)).permute(0, 2, 3, 1).reshape(-1, TINY["embed_dim"])
        noise = 0.01 * torch.randn(codec.n_embed, TINY["embed_dim"])
        codec.vector_quantizer.embedding.weight.copy_(z[torch.randperm(len(z))[: codec.n_embed]] + noise)
    return codec.eval()


def test_forward_shapes_and_straight_through_gradients():
    codec = tiny_codec().train()
    x = torch.rand(2, 3, 64, 96)
    out = codec(x)
    assert out["x_hat"].shape == x.shape and out["indices"].shape == (2, 4, 6)
    assert out["likelihoods"]["indices"].shape == (2, 1, 4, 6)
    (out["x_hat"].mean() + out["vq_loss"]).backward()
    # Straight-through: the reconstruction loss reaches the encoder; the codebook loss the codebook.
    assert codec.encoder.conv_in.weight.grad.abs().sum() > 0
    assert codec.vector_quantizer.embedding.weight.grad.abs().sum() > 0
    assert codec.downsampling == 16


def test_quantiser_picks_nearest_codeword():
    codec = tiny_codec()
    z = torch.randn(1, 8, 3, 5)
    indices = codec.vector_quantizer.indices(z)
    distances = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 8), codec.vector_quantizer.embedding.weight)
    assert torch.equal(indices.reshape(-1), distances.argmin(1))


def test_group_map_covers_every_group_evenly():
    groups = group_map(8, 12, 8)
    assert set(groups.unique().tolist()) == set(range(8))
    assert torch.bincount(groups.reshape(-1)).tolist() == [12] * 8


def test_index_model_ids_name_every_registered_index_model():
    assert INDEX_MODEL_IDS == ("uniform", "static", "transformer")  # stream bytes 0, 1, 2: never reorder
    assert set(INDEX_MODELS) == set(INDEX_MODEL_IDS)


@pytest.mark.parametrize("kind", INDEX_MODEL_IDS)
def test_index_models_round_trip_exactly(kind, photo):
    codec = tiny_codec()
    x = pad_to_multiple(image_tensor(photo), codec.downsampling)
    indices = codec.indices(x)[0]
    codec.static_model.fit(indices)
    stream = codec.compress_indices(indices, CODER, kind)
    assert stream[0] == INDEX_MODEL_IDS.index(kind)
    assert torch.equal(codec.decompress_indices(stream, tuple(indices.shape), CODER), indices)
    # The whole codec: the decoder reproduces the encoder-side reconstruction bit for bit.
    codec.index_model = kind
    x_hat = codec.decompress(codec.compress(x, CODER), CODER)
    assert torch.equal(x_hat, codec.decode_indices(indices[None]))


def test_index_models_rates_on_peaked_indices():
    """Uniform costs log2(K) bits per index; a fitted table codes a skewed grid in fewer bits."""
    codec = tiny_codec()
    torch.manual_seed(3)
    indices = torch.where(torch.rand(16, 16) < 0.9, torch.tensor(5), torch.randint(0, 64, (16, 16)))
    codec.static_model.fit(indices)
    uniform, static = (len(codec.compress_indices(indices, CODER, k)) for k in ("uniform", "static"))
    assert abs(uniform - 256 * 6 / 8) < 16
    assert static < 0.5 * uniform


def test_corrupt_stream_gives_one_line_error(photo):
    codec = tiny_codec()
    data = bytearray(encode_image(codec, photo))
    assert decode_image(bytes(data), codec).shape == photo.shape
    header_len = len(data) - len(codec.compress(pad_to_multiple(image_tensor(photo), 16), CODER).strings[0])
    data[header_len] = 7  # unknown index-model byte; the container's CRC is bypassed below
    with pytest.raises(ValueError, match="unknown index model"):
        codec.decompress_indices(bytes(data[header_len:]), (7, 9), CODER)
    with pytest.raises(CodecLabError):
        decode_image(bytes(data), codec)
    with pytest.raises(ValueError):
        codec.decompress_indices(bytes([2]) + b"\x00" * 5, (7, 9), CODER)


def _taming_keys(ch_mult, num_res_blocks, attn_levels, in_ch_mult_change):
    """Key names of taming's VQModel (taming/modules/diffusionmodules/model.py), spelled out
    from its construction rules, not from this repository's modules."""
    keys = {"encoder.conv_in", "encoder.norm_out", "encoder.conv_out", "decoder.conv_in", "decoder.norm_out",
            "decoder.conv_out", "quant_conv", "post_quant_conv"}
    for part in ("encoder", "decoder"):
        for block in ("block_1", "block_2"):
            keys |= {f"{part}.mid.{block}.{m}" for m in ("norm1", "conv1", "norm2", "conv2")}
        keys |= {f"{part}.mid.attn_1.{m}" for m in ("norm", "q", "k", "v", "proj_out")}
    levels = len(ch_mult)
    for i in range(levels):
        for part, blocks in (("encoder.down", num_res_blocks), ("decoder.up", num_res_blocks + 1)):
            for j in range(blocks):
                keys |= {f"{part}.{i}.block.{j}.{m}" for m in ("norm1", "conv1", "norm2", "conv2")}
                if i in attn_levels:
                    keys |= {f"{part}.{i}.attn.{j}.{m}" for m in ("norm", "q", "k", "v", "proj_out")}
        if i < levels - 1:
            keys.add(f"encoder.down.{i}.downsample.conv")
        if i > 0:
            keys.add(f"decoder.up.{i}.upsample.conv")
    for name in in_ch_mult_change:
        keys.add(name + ".nin_shortcut")
    return {f"{k}.{p}" for k in keys for p in ("weight", "bias")} | {"quantize.embedding.weight"}


# This codec's state_dict prefix -> taming VQModel's (spelled out here, not taken from the codec module).
TO_TAMING = {
    "g_a.encoder.": "encoder.",
    "g_a.quant_conv.": "quant_conv.",
    "g_s.post_quant_conv.": "post_quant_conv.",
    "g_s.decoder.": "decoder.",
    "entropy_model.vector_quantizer.embedding.": "quantize.embedding.",
}
INDEX_MODEL_PREFIX = "entropy_model.index_models."


def taming_name(key: str) -> str:
    """The taming name of a state_dict key of this codec (``KeyError`` for the index models)."""
    for ours, theirs in TO_TAMING.items():
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise KeyError(key)


def taming_state(codec) -> dict:
    """``codec``'s VQGAN tensors under taming's names (the index models are not part of taming)."""
    return {taming_name(k): v for k, v in codec.state_dict().items() if not k.startswith(INDEX_MODEL_PREFIX)}


def test_paper_scale_architecture_has_taming_layout():
    """vqgan_imagenet_f16_16384: ch 128, ch_mult 1,1,2,2,4, attention at 16 (level 4)."""
    with torch.device("meta"):
        codec = vqgan()
    shortcuts = ["encoder.down.2.block.0", "encoder.down.4.block.0", "decoder.up.1.block.0", "decoder.up.3.block.0"]
    expected = _taming_keys([1, 1, 2, 2, 4], 2, {4}, shortcuts)
    ours = set(taming_state(codec))  # every other key (KeyError otherwise) is an index model's
    assert ours == expected
    shapes = {k: tuple(v.shape) for k, v in taming_state(codec).items()}
    assert shapes["quantize.embedding.weight"] == (16384, 256)
    assert shapes["encoder.conv_out.weight"] == (256, 512, 3, 3)
    assert shapes["decoder.conv_in.weight"] == (512, 256, 3, 3)
    assert shapes["encoder.down.4.attn.1.q.weight"] == (512, 512, 1, 1)
    assert shapes["decoder.up.1.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)


def taming_checkpoint_shapes(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, embed_dim,
                             n_embed, in_channels=3, out_ch=3, **_) -> dict[str, tuple]:
    """Tensor names and shapes of a taming-transformers ``VQModel`` (``taming/models/vqgan.py`` and
    ``taming/modules/diffusionmodules/model.py``: Encoder, Decoder, ResnetBlock, AttnBlock), written
    out from that code's constructors, independently of CodecLab's modules."""
    shapes = {}

    def conv(name, c_out, c_in, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c_out, c_in, k, k), (c_out,)

    def norm(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def resnet(name, c_in, c_out):
        norm(f"{name}.norm1", c_in)
        conv(f"{name}.conv1", c_out, c_in, 3)
        norm(f"{name}.norm2", c_out)
        conv(f"{name}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv(f"{name}.nin_shortcut", c_out, c_in, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    levels = len(ch_mult)
    conv("encoder.conv_in", ch, in_channels, 3)
    res, block_in = resolution, ch
    for i, mult in enumerate(ch_mult):
        block_in = ch * ((1,) + tuple(ch_mult))[i]
        for j in range(num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", block_in, ch * mult)
            block_in = ch * mult
            if res in attn_resolutions:
                attn(f"encoder.down.{i}.attn.{j}", block_in)
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
            res //= 2
    resnet("encoder.mid.block_1", block_in, block_in)
    attn("encoder.mid.attn_1", block_in)
    resnet("encoder.mid.block_2", block_in, block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", z_channels, block_in, 3)
    conv("quant_conv", embed_dim, z_channels, 1)
    shapes["quantize.embedding.weight"] = (n_embed, embed_dim)
    conv("post_quant_conv", z_channels, embed_dim, 1)
    block_in, res = ch * ch_mult[-1], resolution // 2 ** (levels - 1)
    conv("decoder.conv_in", block_in, z_channels, 3)
    resnet("decoder.mid.block_1", block_in, block_in)
    attn("decoder.mid.attn_1", block_in)
    resnet("decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(levels)):
        for j in range(num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in, ch * ch_mult[i])
            block_in = ch * ch_mult[i]
            if res in attn_resolutions:
                attn(f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
            res *= 2
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", out_ch, block_in, 3)
    return shapes


def test_load_random_taming_checkpoint(tmp_path):
    """A random checkpoint with taming's own names and shapes (plus its loss.* entries) loads, each
    tensor where taming's name puts it, and nothing of the codec is left out."""
    from codeclab.training.vqgan import VQGANModule

    torch.manual_seed(5)
    state = {k: torch.randn(shape) for k, shape in taming_checkpoint_shapes(**TINY).items()}
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 64, 1, 1)
    module = VQGANModule(vqgan(**TINY), disc_ndf=8)
    state.update({"loss.discriminator." + k[len("discriminator."):]: torch.randn_like(v).abs() if "running_var" in k else torch.randn_like(v)
                  if v.is_floating_point() else v for k, v in module.state_dict().items() if k.startswith("discriminator.")})
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "global_step": 0}, path)
    codec = vqgan(**TINY)
    disc = load_taming_state_dict(codec, torch.load(path, weights_only=True))
    loaded = taming_state(codec)
    assert set(loaded) == {k for k in state if not k.startswith("loss.")}
    for k, v in loaded.items():
        assert torch.equal(v, state[k]), k
    module.load_state_dict({**module.state_dict(), **disc})
    assert torch.equal(module.discriminator.main[0].weight, state["loss.discriminator.main.0.weight"])
    with pytest.raises(KeyError, match="lacks"):
        load_taming_state_dict(vqgan(**TINY), {k: v for k, v in state.items() if k != "quant_conv.weight"})


@pytest.mark.filterwarnings("ignore::UserWarning:torchvision")  # the package's 'pretrained=' call
def test_lpips_matches_the_lpips_package_with_its_released_linear_heads(tmp_path):
    """CodecLab's LPIPS against the reference implementation (the ``lpips`` package, v0.1 VGG):
    the package's released linear heads (``weights/v0.1/vgg.pth``, shipped in its wheel) and its
    VGG16 backbone at a random initialisation (the ImageNet weights are not reachable offline),
    written to the two local files CodecLab loads."""
    lpips = pytest.importorskip("lpips")
    from codeclab.training.losses import LPIPS

    torch.manual_seed(0)
    reference = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    # The package's slices keep torchvision's layer indices: slice1.0 is features.0, slice2.5 features.5.
    backbone = {f"features.{name.split('.', 1)[1]}": value for name, value in reference.net.state_dict().items()}
    torch.save(backbone, tmp_path / "vgg16.pth")
    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    ours = LPIPS(tmp_path / "vgg16.pth", heads)
    x = torch.rand(3, 3, 48, 40) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        expected = reference(x, y).flatten()
        assert torch.allclose(ours(x, y), expected, rtol=1e-5, atol=1e-7)
        assert torch.allclose(ours(x, x), torch.zeros(3))
        assert (expected > 0).all()


@pytest.fixture(scope="module")
def vqgan_run(tmp_path_factory):
    """``train.py codec=vqgan_tiny``: adversarial steps included (disc_start=2), real export."""
    run_dir = tmp_path_factory.mktemp("vqgan_run")
    cmd = [sys.executable, "train.py", "codec=vqgan_tiny", "logger=csv", "trainer.max_steps=6", "trainer.log_every_n_steps=1",
           "data.patch_size=64", "data.batch_size=2", "data.val_patch_size=64", "data.val_max_images=1",
           "data.samples_per_epoch=8", f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_train_py_codec_vqgan_trains_generator_and_discriminator(vqgan_run):
    import csv

    rows = list(csv.DictReader(open(next(vqgan_run.rglob("metrics.csv")))))
    assert any(row.get("train/d") for row in rows) and any(row.get("train/g") for row in rows)
    codec = load_model(vqgan_run / "model.safetensors")
    assert isinstance(codec, VQGAN) and codec.config["n_embed"] == 64


def test_cli_encode_decode_and_ladder(vqgan_run, tmp_path):
    import skimage.data

    from codeclab.training.vqgan_ladder import build_ladder, kmeans_codebook, load_vqgan

    data = tmp_path / "train"
    data.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(skimage.data, name)()).save(data / f"{name}.png")
    base = load_vqgan(next((vqgan_run / "checkpoints").glob("*.ckpt")))
    records = build_ladder(base, [64, 8], data, tmp_path / "ladder", crop=(128, 128), finetune_steps=1,
                           prior_steps=1, log=lambda _: None)
    assert [r["K"] for r in records] == [64, 8] and records[1]["finetune_loss_first"] is not None
    image, photo = tmp_path / "in.png", skimage.data.astronaut()[:70, :100]
    Image.fromarray(photo).save(image)
    base_state = base.state_dict()
    for record in records:
        codec = load_model(tmp_path / "ladder" / record["model"])
        assert codec.n_embed == record["K"]
        # Encoder and decoder are frozen (VQ_Frozen): every rung carries the base model's weights.
        frozen = [k for k in codec.state_dict() if k.startswith(("g_a.encoder.", "g_s.decoder."))]
        assert frozen and all(torch.equal(codec.state_dict()[k], base_state[k]) for k in frozen)
        assert decode_image(encode_image(codec, photo), codec).shape == photo.shape
    # The K = 64 rung keeps the trained codebook; the K' = 8 one starts from K-means centres of it.
    rung64 = load_model(tmp_path / "ladder" / records[0]["model"])
    codebook = base.vector_quantizer.embedding.weight.detach()
    assert torch.equal(rung64.vector_quantizer.embedding.weight, codebook)
    rung8 = load_model(tmp_path / "ladder" / records[1]["model"]).vector_quantizer.embedding.weight.detach()
    centres = kmeans_codebook(codebook, torch.ones(64, dtype=torch.long), 8, seed=0)  # plain: usage is not read
    assert (rung8 - centres).abs().max() <= 1.1e-4  # one Adam step of lr 1e-4 from the K-means centres
    rung8_codec = load_model(tmp_path / "ladder" / records[1]["model"])
    assert not torch.equal(rung8_codec.g_a.quant_conv.weight, base.g_a.quant_conv.weight)  # VQ_Frozen trains it
    model = tmp_path / "ladder" / records[-1]["model"]
    run_main("encode", image, "-m", model, "-o", tmp_path / "x.clab", check=True)
    run_main("decode", tmp_path / "x.clab", "-o", tmp_path / "x.png", "-m", model, check=True)
    assert np.asarray(Image.open(tmp_path / "x.png")).shape == (70, 100, 3)
    corrupt = bytearray((tmp_path / "x.clab").read_bytes())
    corrupt[-3] ^= 0xFF
    with pytest.raises(CodecLabError, match="corrupt"):
        decode_image(bytes(corrupt), load_model(model))


def test_model_file_round_trip_keeps_index_models(tmp_path):
    codec = tiny_codec()
    codec.static_model.fit(torch.randint(0, 8, (100,)))
    export_model(codec, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert torch.equal(loaded.static_model.counts, codec.static_model.counts)
    assert isinstance(build_codec("vqgan", loaded.config), VQGAN)
    indices = torch.randint(0, 64, (4, 5))
    assert torch.equal(loaded.decompress_indices(codec.compress_indices(indices, CODER, "transformer"), (4, 5), CODER), indices)


def test_ladder_py_bad_inputs_give_one_line_errors(tmp_path):
    """ladder.py (Hydra, like train.py): a missing or foreign checkpoint and a wrong choice are one
    line each, before anything is written."""
    from omegaconf import OmegaConf

    from codeclab.errors import CodecLabError
    from codeclab.training.vqgan_ladder import run_ladder

    missing = tmp_path / "missing.ckpt"
    proc = subprocess.run([sys.executable, "ladder.py", f"model={missing}", f"images={tmp_path}", f"output_dir={tmp_path / 'out'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1] == f"ladder.py: error: checkpoint not found: {missing}", proc.stderr
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    defaults = OmegaConf.load(ROOT / "configs" / "ladder.yaml")
    for overrides, message in (({"model": str(tmp_path / "junk.ckpt")}, "not a CodecLab training checkpoint"),
                               ({"model": "x.ckpt", "kmeans": "weighted"}, "kmeans=weighted is not one of plain, usage")):
        config = OmegaConf.merge(defaults, {"images": str(tmp_path), "output_dir": str(tmp_path / "out"), **overrides})
        with pytest.raises(CodecLabError, match=message):
            run_ladder(config)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("beta_on", ["codebook", "commitment"])
def test_vq_loss_puts_beta_where_taming_does(beta_on):
    """taming's VectorQuantizer2(legacy=True), the published models' loss: the encoder gets the
    commitment gradient at weight 1, the codebook its gradient at weight beta (VQ-VAE swaps them)."""
    from codeclab.entropy_models.vq import VectorQuantizer

    torch.manual_seed(0)
    quantizer = VectorQuantizer(16, 4, beta=0.25, beta_on=beta_on)
    z = torch.randn(1, 4, 3, 3, requires_grad=True)
    _, loss, indices = quantizer(z)
    loss.backward()
    z_q = quantizer.embed(indices).detach()
    unit = 2 * (z - z_q).detach() / z.numel()  # d mean((z - c)^2) / dz
    encoder_weight, codebook_weight = (1.0, 0.25) if beta_on == "codebook" else (0.25, 1.0)
    torch.testing.assert_close(z.grad, encoder_weight * unit)
    codebook_grad = torch.zeros_like(quantizer.embedding.weight)
    codebook_grad.index_add_(0, indices.reshape(-1), -unit.permute(0, 2, 3, 1).reshape(-1, 4))
    torch.testing.assert_close(quantizer.embedding.weight.grad, codebook_weight * codebook_grad)
    assert VectorQuantizer(4, 2).beta_on == "codebook"


def test_kmeans_plain_is_maos_and_usage_weighting_is_an_option():
    from codeclab.training.vqgan_ladder import kmeans_codebook

    codebook = torch.tensor([[0.0, 0.0], [0.0, 0.2], [10.0, 10.0], [10.0, 10.2]])
    usage = torch.tensor([1, 3, 0, 1])  # row 2 never used

    def centres(weighting):
        return sorted(v for row in sorted(kmeans_codebook(codebook, usage, 2, weighting=weighting).tolist()) for v in row)

    assert centres("plain") == pytest.approx(sorted([0.0, 0.1, 10.0, 10.1]))  # every codeword, unweighted
    assert centres("usage") == pytest.approx(sorted([0.0, 0.15, 10.0, 10.2]))  # used codewords, weighted 1:3 and 1
    with pytest.raises(ValueError, match="weighting"):
        kmeans_codebook(codebook, usage, 2, weighting="median")


def test_lost_index_recovery_fills_only_lost_positions_with_the_priors_best_guess():
    """A prior trained on grids with a learnable pattern recovers 20% lost indices; received
    indices are never changed; each filled index is the argmax given every received one."""
    from codeclab.entropy_models.index_models import MaskedIndexTransformer

    torch.manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")

    def grid(shift):
        return ((rows + cols + shift) % 4) * 2 + (rows % 2)  # 8 symbols, fixed by the neighbours

    prior = MaskedIndexTransformer(8, dim=32, depth=1, heads=2, groups=4)
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for _ in range(150):
        batch = torch.stack([grid(int(s)) for s in torch.randint(0, 4, (16,))])
        loss = prior.loss(batch, random_fraction=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    truth = grid(1)
    lost = torch.rand(8, 8) < 0.2
    with torch.no_grad():
        recovered = prior.recover(truth, lost)
        expected = prior(truth.masked_fill(lost, prior.mask_token)[None])[0].argmax(-1)
    assert torch.equal(recovered[~lost], truth[~lost])
    assert torch.equal(recovered[lost], expected[lost])
    assert (recovered[lost] == truth[lost]).float().mean() >= 0.9
    blind = (torch.randint(0, 8, (int(lost.sum()),)) == truth[lost]).float().mean()
    assert (recovered[lost] == truth[lost]).float().mean() > blind


def test_vq_frozen_fine_tuning_optimises_only_the_quantizer_convolutions_and_codebook():
    from codeclab.training.vqgan import VQGANModule

    codec = tiny_codec()
    generator, _ = VQGANModule(codec, disc_ndf=8, trainable="quantizer").configure_optimizers()
    optimised = {id(p) for group in generator.param_groups for p in group["params"]}
    expected = [codec.g_a.quant_conv.weight, codec.g_a.quant_conv.bias, codec.vector_quantizer.embedding.weight,
                codec.g_s.post_quant_conv.weight, codec.g_s.post_quant_conv.bias]
    assert optimised == {id(p) for p in expected}
    everything, _ = VQGANModule(codec, disc_ndf=8).configure_optimizers()
    assert sum(p.numel() for g in everything.param_groups for p in g["params"]) > 10 * sum(p.numel() for p in expected)
    with pytest.raises(ValueError, match="trainable"):
        VQGANModule(codec, trainable="decoder")
