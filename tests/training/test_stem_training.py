"""``train.py experiment=stem``: caches latents of a frozen image codec, trains only the
spatiotemporal entropy model, and exports a video model that codes a clip."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.codecs import mbt2018_mean
from codeclab.codecs.stem import stem
from codeclab.training.latent_pairs import LatentPairs, synthetic_clip
from codeclab.training.stem import StemModule, quantize_reference
from codeclab.data.video import Clip
from codeclab.errors import CodecLabError
from codeclab.formats.model_file import export_model, load_model
from codeclab.formats.model_header import model_sha256, read_header
from codeclab.formats.video_file import decode_video, encode_video
from tests.conftest import ROOT


def _frames(folder, count=6, size=64):
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size + 4 * count, 3)).astype(np.uint8)
    for t in range(count):
        Image.fromarray(np.ascontiguousarray(base[:, 4 * t : 4 * t + size])).save(folder / f"frame_{t:04d}.png")
    return folder


def test_synthetic_clips_move_and_pairs_stay_aligned():
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3)).astype(np.uint8)
    clip = synthetic_clip(image, 4, 32, np.random.default_rng(2))
    assert len(clip) == 4 and all(f.shape == (32, 32, 3) for f in clip)
    assert not np.array_equal(clip[0], clip[3])
    y = torch.arange(5 * 2 * 6 * 6, dtype=torch.float32).view(5, 2, 6, 6)
    pairs = LatentPairs([(y, -y)], crop=3, max_distance=2, samples=20, seed=0)
    for index in range(20):
        sample = pairs[index]
        assert sample["y"].shape == (2, 3, 3)
        assert torch.equal(sample["mu"], -sample["y"]) and torch.equal(sample["mu_ref"], -sample["y_ref"])
        # Same crop and flips in both: the offset between them is a whole number of frames (1 or 2).
        frames = (sample["y"] - sample["y_ref"]) / (2 * 6 * 6)
        assert torch.all(frames == frames.flatten()[0]) and abs(frames.flatten()[0].item()) in (1, 2)


def test_chain_samples_are_the_next_frames_in_order():
    y = torch.arange(6 * 2 * 5 * 5, dtype=torch.float32).view(6, 2, 5, 5)
    chains = LatentPairs([(y, -y)], crop=3, max_distance=6, samples=30, seed=1, chain=3)
    directions = set()
    for index in range(30):
        sample = chains[index]
        assert sample["y"].shape == (3, 2, 3, 3) and sample["y_ref"].shape == (2, 3, 3)
        assert torch.equal(sample["mu"], -sample["y"])
        # Frame k of the chain is k + 1 frames from the reference, all in one direction of time.
        offsets = [((sample["y"][k] - sample["y_ref"]) / (2 * 5 * 5)).unique().tolist() for k in range(3)]
        step = offsets[0][0]
        assert step in (1, -1) and offsets == [[step * (k + 1)] for k in range(3)]
        directions.add(step)
    assert directions == {1, -1}
    with pytest.raises(CodecLabError, match="no clip has 7 frames"):
        LatentPairs([(y, -y)], crop=3, max_distance=6, samples=1, chain=6)


def test_chain_p_frames_reference_the_previous_reconstruction():
    torch.manual_seed(0)
    module = StemModule(stem(8, 12, spatial="checkerboard"))
    y, mu = torch.randn(2, 3, 12, 8, 8) * 4, torch.randn(2, 12, 8, 8)
    batch = {"y_ref": torch.randn(2, 12, 8, 8) * 4, "mu_ref": mu, "y": y}
    seen = []
    model = module.codec.temporal_model
    model.register_forward_hook(lambda m, args, out: seen.append((args[1], out["y_hat"])))
    chain_bpp = module.p_frame_bpp(batch, None)
    assert chain_bpp.shape == (2,) and len(seen) == 3
    assert torch.equal(seen[0][0], quantize_reference(module.codec, batch["y_ref"], mu, None))
    assert torch.equal(seen[1][0], seen[0][1]) and torch.equal(seen[2][0], seen[1][1])
    # Its loss is the mean of the frames' rates; a chain of one is a pair.
    pairs = []
    for frames in (y[:, 0], y[:, :1]):
        torch.manual_seed(1)  # the same training noise for both
        pairs.append(module.p_frame_bpp({**batch, "y": frames}, None))
    assert torch.equal(*pairs)
    chain_bpp.mean().backward()
    assert model.temporal_prior[0].weight.grad.abs().sum() > 0


def test_train_py_experiment_stem(tmp_path):
    torch.manual_seed(0)
    image_model = tmp_path / "image.safetensors"
    export_model(mbt2018_mean(8, 12, rate_levels=4, scale_table_levels=256), image_model)
    sequence = _frames(tmp_path / "clip")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (96, 128, 3)).astype(np.uint8)).save(photos / "a.png")
    run = tmp_path / "run"
    cmd = [sys.executable, "train.py", "experiment=stem", "codec.N=8", "codec.M=12", "codec.rate_levels=4",
           f"init_weights={image_model}", f"data.sequences=[{sequence}]", "data.synthetic=2", f"data.synthetic_dir={photos}",
           "data.crop=4", "data.val_frames=3", "data.val_samples=4", "data.samples_per_epoch=8", "data.batch_size=4",
           "data.chain=2",  # chains of 2 P-frames (the README's experiment=stem line trains pairs)
           "codec.temporal_arithmetic=int8",  # 8-bit P-frame networks, calibrated when training starts
           f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_steps=4", "trainer.log_every_n_steps=1",
           "export_weights_dtype=float32", f"hydra.run.dir={run}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, WANDB_MODE="disabled"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "cache").glob("stem_latents_*.pt"))
    assert "calibrated the inputs of 10 8-bit layers" in proc.stdout
    metrics = (run / "csv" / "version_0" / "metrics.csv").read_text()
    assert "train/bpp" in metrics and "val/p_over_i" in metrics
    # The file holds the P-frame model and names the frozen image codec's file as its base.
    header = read_header(run / "model.safetensors")
    assert header.metadata["base_model"] == model_sha256(read_header(image_model).metadata)
    assert all(name.startswith("temporal_model.") for name in header.specs)
    with pytest.raises(CodecLabError, match="needs its base model"):
        load_model(run / "model.safetensors")
    video = load_model(run / "model.safetensors", [tmp_path])
    image = load_model(image_model)
    assert video.codec_id == "stem" and video.entropy_model.portable and video.temporal_model.arithmetic == "int8"
    # The image codec stayed frozen: its weights are the ones it started from.
    for name, tensor in image.state_dict().items():
        assert torch.equal(video.state_dict()[name], tensor), name
    frames = [np.asarray(Image.open(p)) for p in sorted(sequence.iterdir())[:3]]
    encoded = encode_video(video, Clip(frames), intra_period=-1, level=1)
    assert len(decode_video(encoded.data, video).frames) == 3
