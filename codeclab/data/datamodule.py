"""Training and validation data: random crops of a folder of images (or bundled photographs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from .images import default_test_images, default_train_images, list_images, read_image, to_tensor


class _ImageSource:
    """Images from a folder (read lazily, or all decoded to uint8 up front with ``preload``) or a
    list of arrays."""

    def __init__(self, folder: str | None, bundled, preload: bool = False, splits: Sequence[str] | None = None):
        self.paths = list_images(folder, splits) if folder else None
        self.arrays = None if folder else [array for _, array in bundled()]
        if self.paths is not None and preload:
            # Decoding a JPEG costs more than a training crop of it; 500 BSDS500 images are 230 MB.
            self.arrays, self.paths = [read_image(path, notice=None) for path in self.paths], None

    def __len__(self):
        return len(self.paths) if self.paths is not None else len(self.arrays)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_image(self.paths[i], notice=None) if self.paths is not None else self.arrays[i]


class RandomCrops(Dataset):
    """Random ``patch_size`` crops, with random horizontal flips if ``flip``; smaller images are
    edge-padded."""

    def __init__(self, source: _ImageSource, patch_size: int, flip: bool = True):
        self.source, self.patch_size, self.flip = source, patch_size, flip

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        image, p = self.source[i], self.patch_size
        height, width = image.shape[:2]
        top = int(torch.randint(0, max(0, height - p) + 1, ()))
        left = int(torch.randint(0, max(0, width - p) + 1, ()))
        # Crop before converting: the float copy of a whole photograph costs more than small crops.
        x = to_tensor(image[top : top + p, left : left + p])
        pad_h, pad_w = p - x.shape[1], p - x.shape[2]
        if pad_h or pad_w:
            x = F.pad(x[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
        return torch.flip(x, dims=[2]) if self.flip and torch.rand(()) < 0.5 else x


class CenterCrops(Dataset):
    """Deterministic centre crops (validation), so validation losses are comparable across epochs."""

    def __init__(self, source: _ImageSource, patch_size: int, max_images: int | None):
        self.source, self.patch_size = source, patch_size
        self.count = len(source) if max_images is None else min(len(source), max_images)

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        x = to_tensor(self.source[i])
        p = self.patch_size
        if x.shape[1] < p or x.shape[2] < p:
            x = F.pad(x[None], (0, max(0, p - x.shape[2]), 0, max(0, p - x.shape[1])), mode="replicate")[0]
        top, left = (x.shape[1] - p) // 2, (x.shape[2] - p) // 2
        return x[:, top : top + p, left : left + p]


class CropDraws(Sampler):
    """``samples`` indices drawn with replacement (a RandomSampler's). Deliberately not a
    RandomSampler: Lightning's DDP replaces one of those by a DistributedSampler over the images,
    so each process would get ``images / processes`` crops an epoch (zero batches for the 7
    bundled photographs), whereas it splits these draws: ``samples / processes`` each."""

    def __init__(self, dataset: Dataset, samples: int):
        self.draws = RandomSampler(dataset, replacement=True, num_samples=samples)

    def __iter__(self):
        return iter(self.draws)

    def __len__(self) -> int:
        return len(self.draws)


class ImageDataModule(pl.LightningDataModule):
    """Lightning data module over image folders.

    Args:
        train_dir: folder of training images; ``None`` uses scikit-image's bundled photographs.
        val_dir: folder of validation images; ``None`` uses the bundled test photographs.
        test_dir: folder evaluated by ``eval.py`` (not used for training).
        patch_size: side of the square training crops.
        samples_per_epoch: crops drawn (with replacement) per epoch, so small folders give
            epochs of a useful length.
        preload: decode every training image to uint8 in memory once, at setup.
        flip: random horizontal flips of the training crops (WaLLoC's recipe has none).
        train_splits, val_splits: only the images of a folder that its ``SPLITS.txt`` puts in these
            splits (``None``: all), so one folder gives training images and held-apart
            validation images (BSDS500: train + test for training, val to choose checkpoints).
        test_splits: the same for ``test_dir`` (``eval.py data=bsds500_val``).
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        patch_size: int = 256,
        val_patch_size: int = 256,
        batch_size: int = 8,
        samples_per_epoch: int = 4000,
        val_max_images: int | None = 8,
        num_workers: int = 0,
        preload: bool = False,
        flip: bool = True,
        train_splits: Sequence[str] | None = None,
        val_splits: Sequence[str] | None = None,
        test_splits: Sequence[str] | None = None,
    ):
        super().__init__()
        self.train_dir, self.val_dir, self.test_dir = train_dir, val_dir, test_dir
        self.patch_size, self.val_patch_size = patch_size, val_patch_size
        self.batch_size, self.samples_per_epoch = batch_size, samples_per_epoch
        self.val_max_images, self.num_workers, self.preload, self.flip = val_max_images, num_workers, preload, flip
        self.train_splits, self.val_splits, self.test_splits = train_splits, val_splits, test_splits

    def setup(self, stage: str | None = None):
        train = _ImageSource(self.train_dir, default_train_images, self.preload, self.train_splits)
        self.train_set = RandomCrops(train, self.patch_size, self.flip)
        val = _ImageSource(self.val_dir, default_test_images, splits=self.val_splits)
        self.val_set = CenterCrops(val, self.val_patch_size, self.val_max_images)

    def train_dataloader(self):
        sampler = CropDraws(self.train_set, self.samples_per_epoch)
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
            drop_last=True, persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=1, num_workers=self.num_workers)

