"""Training data for STEM: pairs of cached latents of a frozen image codec.

STEM trains only the entropy model on a frozen autoencoder, so ``y = g_a(x)`` of every training
frame is computed once (and cached on disk), together with the hyperprior means ``mu`` of the
image codec that let a sample quantise its reference exactly as an I-frame at any rate level:
``y_hat = round(g (y - mu)) / g + mu``.

A sample is (reference frame ``t``, current frame ``t + d``), ``d`` uniform in ``1 .. max_distance``
(STEM trains on a reference and a frame up to 6 frames later), the same random latent crop of
both and the same flips. With ``chain`` K > 1 (the named deviation for long GOPs) a sample is the
reference frame ``t`` and the K frames after it, ``t + s, ..., t + K s`` (``s = +-1``): the
trainer codes them as a chain of P-frames, each referenced to the previous one's reconstruction.

Clips: the folders in ``sequences`` (real motion: Vid4 calendar and foliage), plus ``synthetic``
clips made from still photographs (a crop window that holds still, pans or zooms, with fresh
sensor noise in every frame; :func:`synthetic_clip`). The test sequences never enter.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import CodecLabError
from ..data.images import list_images, read_image, to_tensor
from ..entropy_models.latent_coding import quantize_factorized
from ..formats.model_file import load_model, read_metadata
from ..data.video import read_png_folder


# Changes whenever synthetic_clip draws differently, so that stale caches are not reused.
SYNTHETIC_MOTION = "still-slow-fast, zoom 1%, noise 1"


def _crop_to_multiple(frame: np.ndarray, multiple: int) -> np.ndarray:
    height, width = (s - s % multiple for s in frame.shape[:2])
    if height == 0 or width == 0:
        raise CodecLabError(f"a {frame.shape[1]}x{frame.shape[0]} frame is smaller than {multiple} pixels")
    return frame[:height, :width]


def synthetic_clip(image: np.ndarray, frames: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``frames`` crops of ``size`` x ``size`` from one photograph, as a camera would film it: a
    third of the clips hold still, a third pan slowly (up to 1.5 pixels per frame), a third fast
    (up to 8), half of them also zoom (up to 1% per frame); every frame gets its own sensor noise
    (Gaussian, 1 code value). Bilinear resampling."""
    tensor = to_tensor(image)[None]
    height, width = image.shape[:2]
    speed = rng.choice([0.0, 1.5, 8.0])
    velocity = rng.uniform(-speed, speed, size=2)
    zoom = 1 + (rng.uniform(-0.01, 0.01) if rng.random() < 0.5 else 0.0)
    span = size * max(1.0, zoom ** frames)
    cy = rng.uniform(span / 2, max(span / 2, height - span / 2 - abs(velocity[0]) * frames))
    cx = rng.uniform(span / 2, max(span / 2, width - span / 2 - abs(velocity[1]) * frames))
    if velocity[0] < 0:
        cy = height - cy
    if velocity[1] < 0:
        cx = width - cx
    clip = []
    for t in range(frames):
        half = size * zoom**t / 2
        y0, x0 = cy + velocity[0] * t, cx + velocity[1] * t
        # An affine grid over the window in normalised coordinates.
        ys = torch.linspace(y0 - half, y0 + half, size) / (height - 1) * 2 - 1
        xs = torch.linspace(x0 - half, x0 + half, size) / (width - 1) * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None].float()
        frame = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="border", align_corners=True)[0].permute(1, 2, 0)
        noisy = frame.numpy() * 255 + rng.normal(0.0, 1.0, size=frame.shape)
        clip.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    return clip


@torch.no_grad()
def clip_latents(codec, frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, mu)`` ``[T, M, h, w]`` of a clip under a (frozen) image codec."""
    ys, mus = [], []
    for frame in frames:
        x = to_tensor(_crop_to_multiple(frame, codec.downsampling))[None]
        y = codec.analysis(x)
        ys.append(y[0])
        mus.append(hyper_means(codec.entropy_model, y)[0])
    return torch.stack(ys), torch.stack(mus)


def hyper_means(entropy_model, y: torch.Tensor) -> torch.Tensor:
    """The means ``mu`` the mean-scale hyperprior predicts for ``y`` (level-independent)."""
    z_hat = quantize_factorized(entropy_model.entropy_bottleneck, entropy_model.h_a(y))
    return entropy_model.h_s(z_hat).chunk(2, 1)[1]


class LatentPairs(Dataset):
    """Random (reference, current) latent crops from cached clips ``[(y, mu), ...]``; with
    ``chain`` K > 1, (reference, the K next frames) with ``y`` and ``mu`` of shape ``[K, M, h, w]``."""

    def __init__(self, clips: list[tuple[torch.Tensor, torch.Tensor]], crop: int, max_distance: int, samples: int,
                 seed: int | None = None, chain: int = 1):
        if chain < 1:
            raise ValueError(f"chain must be at least 1 P-frame, got {chain}")
        self.clips = [c for c in clips if c[0].shape[0] >= chain + 1 and min(c[0].shape[-2:]) >= crop]
        if not self.clips:
            raise CodecLabError(f"no clip has {chain + 1} frames with latents of at least {crop}x{crop}")
        self.crop, self.max_distance, self.samples, self.seed, self.chain = crop, max_distance, samples, seed, chain
        # Clips are drawn in proportion to their frame count.
        weights = torch.tensor([float(c[0].shape[0]) for c in self.clips])
        self.weights = weights / weights.sum()

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index) if self.seed is not None else None

        def draw(high: int) -> int:
            return int(torch.randint(0, high, (1,), generator=generator))

        y, mu = self.clips[int(torch.multinomial(self.weights, 1, generator=generator))]
        frames, h, w = y.shape[0], y.shape[-2], y.shape[-1]
        # A chain steps one frame at a time (what coding a long GOP does); a pair jumps up to max_distance.
        distance = 1 + draw(min(self.max_distance, frames - 1)) if self.chain == 1 else self.chain
        t = draw(frames - distance)
        if draw(2):  # either direction of time
            t, distance = t + distance, -distance
        i, j = draw(h - self.crop + 1), draw(w - self.crop + 1)
        window = (..., slice(i, i + self.crop), slice(j, j + self.crop))
        step = 1 if distance > 0 else -1
        current = t + distance if self.chain == 1 else [t + step * k for k in range(1, self.chain + 1)]
        sample = {"y_ref": y[t][window], "mu_ref": mu[t][window], "y": y[current][window], "mu": mu[current][window]}
        flips = [d for d, flip in ((-1, draw(2)), (-2, draw(2))) if flip]
        return {k: v.flip(flips).contiguous() if flips else v.contiguous() for k, v in sample.items()}


class LatentPairDataModule(pl.LightningDataModule):
    """Cached latent pairs of training clips under the frozen image codec in ``image_model``.

    Args:
        image_model: model file of the image codec STEM freezes (its ``g_a`` and hyperprior).
        sequences: folders of PNG frames (training clips; validation uses their last ``val_frames``).
        synthetic: clips made from the photographs in ``synthetic_dir`` (0: none).
        crop: latent crop side (16 = 256 pixels); ``max_distance``: largest reference distance.
        chain: P-frames per sample (1: STEM's pairs; K > 1: the K frames after the reference,
            coded as a chain, in training and validation alike).
    """

    def __init__(self, image_model: str, sequences: list[str], synthetic: int = 0, synthetic_dir: str | None = None,
                 synthetic_frames: int = 7, crop: int = 16, max_distance: int = 6, batch_size: int = 8,
                 samples_per_epoch: int = 800, val_frames: int = 8, val_samples: int = 32, cache_dir: str = "logs/cache",
                 num_workers: int = 0, seed: int = 0, chain: int = 1):
        super().__init__()
        if crop <= 0 or crop % 4:
            raise ValueError(f"crop must be a positive multiple of 4 latent positions (the hyperprior's downsampling), got {crop}")
        self.image_model, self.sequences = image_model, list(sequences)
        self.synthetic, self.synthetic_dir, self.synthetic_frames = int(synthetic), synthetic_dir, int(synthetic_frames)
        self.crop, self.max_distance, self.batch_size = int(crop), int(max_distance), int(batch_size)
        self.samples_per_epoch, self.val_frames, self.val_samples = int(samples_per_epoch), int(val_frames), int(val_samples)
        self.cache_dir, self.num_workers, self.seed, self.chain = Path(cache_dir), int(num_workers), int(seed), int(chain)

    def _cache_path(self, metadata: dict) -> Path:
        key = json.dumps({"model": metadata["weights_sha256"], "sequences": [str(Path(s).resolve()) for s in self.sequences],
                          "synthetic": self.synthetic, "synthetic_dir": str(self.synthetic_dir),
                          "synthetic_frames": self.synthetic_frames, "seed": self.seed, "motion": SYNTHETIC_MOTION}, sort_keys=True)
        return self.cache_dir / f"stem_latents_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"

    def _build_clips(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        codec = load_model(self.image_model)
        clips = [clip_latents(codec, read_png_folder(Path(folder)).frames) for folder in self.sequences]
        if self.synthetic:
            if not self.synthetic_dir:
                raise CodecLabError("synthetic clips need synthetic_dir (a folder of photographs)")
            rng = np.random.default_rng(self.seed)
            photos = list_images(self.synthetic_dir)
            # Frames of at least one latent crop, in whole multiples of the codec's downsampling.
            size = -(-codec.stride * self.crop // codec.downsampling) * codec.downsampling
            for k in range(self.synthetic):
                image = read_image(photos[k % len(photos)])
                if min(image.shape[:2]) < math.ceil(size * 1.2):
                    continue
                clips.append(clip_latents(codec, synthetic_clip(image, self.synthetic_frames, size, rng)))
        return clips

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        path = self._cache_path(read_metadata(self.image_model))
        if path.is_file():
            stored = torch.load(path, weights_only=True)
            clips = list(zip(stored["y"], stored["mu"]))
        else:
            clips = self._build_clips()
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"y": [c[0] for c in clips], "mu": [c[1] for c in clips]}, path)
        # The last frames of each real sequence validate (never trained on); synthetic clips all train.
        real = len(self.sequences)
        train = [(y[: -self.val_frames], mu[: -self.val_frames]) for y, mu in clips[:real]] + clips[real:]
        val = [(y[-self.val_frames:], mu[-self.val_frames:]) for y, mu in clips[:real]]
        self.train_set = LatentPairs(train, self.crop, self.max_distance, self.samples_per_epoch, chain=self.chain)
        # Validation: consecutive frames (the reference is the previous frame, as when coding).
        self.val_set = LatentPairs(val, self.crop, 1, self.val_samples, seed=self.seed, chain=self.chain)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
