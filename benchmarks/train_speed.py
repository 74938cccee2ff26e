"""Training speed: CodecLab's training step against a compressai ``examples/train.py``-style loop.

Same model (mbt2018-mean, ``--N``/``--M``, default 128/192), batch, crop and images, one thread
each unless ``--threads``, measured side by side in one run:

* ``codeclab``: ``train.py``'s own path, a Lightning ``Trainer`` fitting
  :class:`~codeclab.training.RateDistortionModule` with the CPU recipe's settings (bf16
  transforms with the entropy model in float32, channels-last, one optimiser step with the
  quantiles in their own parameter group, training images decoded to uint8 once);
* ``compressai``: compressai's model, ``RateDistortionLoss``, two Adam optimisers (main and
  aux, two backward passes), gradient clipping, and images read with PIL and cropped with
  torchvision per sample, as compressai's example does (``num_workers`` 0 for both).

Rounds alternate between the two so both meet the same background load; each reports the
median step rate over its timed steps (after ``--warmup`` steps). ``--json`` prints
``{"codeclab": {"steps_per_s": ...}, "compressai": {"steps_per_s": ...}, "ratio": ...}``.

Usage: python benchmarks/train_speed.py [--json] [--steps 40] [--rounds 2] [--batch 8] [--crop 128]
       [--data DIR] [--device cpu|cuda] [--fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "train" / "bsds500"


class _StepTimer:
    """Lightning callback: wall time of every training step (forward, backward, optimiser)."""

    def __init__(self):
        import pytorch_lightning as pl

        outer = self

        class Callback(pl.Callback):
            def on_train_batch_start(self, *args):
                outer.start = time.perf_counter()

            def on_train_batch_end(self, *args):
                outer.times.append(time.perf_counter() - outer.start)

        self.times: list[float] = []
        self.callback = Callback()


def codeclab_round(args) -> list[float]:
    import pytorch_lightning as pl

    from codeclab.codecs import mbt2018_mean
    from codeclab.data import ImageDataModule
    from codeclab.training import RateDistortionModule

    data = ImageDataModule(train_dir=args.data, val_dir=None, patch_size=args.crop, batch_size=args.batch,
                           samples_per_epoch=args.batch * (args.steps + args.warmup), num_workers=0, preload=True)
    module = RateDistortionModule(
        mbt2018_mean(args.N, args.M), lmbda=0.013, optimizer=lambda p: torch.optim.Adam(p, lr=1e-4),
        transform_dtype=None if args.fp32 else "bfloat16", channels_last=not args.fp32,
    )
    timer = _StepTimer()
    trainer = pl.Trainer(accelerator=args.device, devices=1, max_steps=args.steps + args.warmup, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, callbacks=[timer.callback])
    trainer.fit(module, datamodule=data)
    return timer.times[args.warmup:]


def compressai_round(args) -> list[float]:
    from compressai.losses import RateDistortionLoss
    from compressai.models import MeanScaleHyperprior
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from codeclab.data.images import list_images

    class ImageFolder(Dataset):  # compressai.datasets.ImageFolder without its split folders
        def __init__(self, paths, transform):
            self.paths, self.transform = paths, transform

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            return self.transform(Image.open(self.paths[i]).convert("RGB"))

    device = torch.device(args.device)
    paths = list_images(args.data)
    loader = DataLoader(ImageFolder(paths, transforms.Compose([transforms.RandomCrop(args.crop), transforms.ToTensor()])),
                        batch_size=args.batch, shuffle=True, num_workers=0)
    net = MeanScaleHyperprior(args.N, args.M).to(device)
    main = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
    criterion = RateDistortionLoss(lmbda=0.013)
    times, batches = [], iter(loader)
    for _ in range(args.steps + args.warmup):
        start = time.perf_counter()
        try:
            x = next(batches).to(device)
        except StopIteration:
            batches = iter(loader)
            x = next(batches).to(device)
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        loss = criterion(net(x), x)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        net.aux_loss().backward()
        aux_optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[args.warmup:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--N", type=int, default=128)
    parser.add_argument("--M", type=int, default=192)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of training images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp32", action="store_true", help="codeclab without bf16 and channels-last")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("WANDB_MODE", "disabled")
    times: dict[str, list[float]] = {"codeclab": [], "compressai": []}
    for _ in range(args.rounds):
        times["codeclab"] += codeclab_round(args)
        times["compressai"] += compressai_round(args)
    result = {name: {"steps_per_s": 1 / statistics.median(t), "timed_steps": len(t)} for name, t in times.items()}
    result["ratio"] = result["codeclab"]["steps_per_s"] / result["compressai"]["steps_per_s"]
    result["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"codeclab {result['codeclab']['steps_per_s']:.2f} steps/s, compressai {result['compressai']['steps_per_s']:.2f} "
              f"steps/s: {result['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
