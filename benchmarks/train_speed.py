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

Usage: python benchmarks/train_speed.py [--json] [--json-file PATH] [--smoke] [--steps 40] [--rounds 2] [--batch 8] [--crop 128]
       [--data DIR] [--device cpu|cuda] [--fp32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# Small enough for --smoke: a few steps of a tiny model on the tiny data set.
SMOKE = {"batch": 2, "crop": 64, "N": 16, "M": 24, "data": lambda: str(_common.smoke_data() / "train" / "bsds500")}


class _StepHook:
    """Lightning callback: wall time of every training step; stops after ``seconds`` of fit time
    (counted from the ``fit`` call, data loading included) and calls ``on_step(codec, elapsed)``."""

    def __init__(self, seconds: float | None, on_step):
        import pytorch_lightning as pl

        outer = self
        self.times: list[float] = []
        self.begin = time.perf_counter()

        class Callback(pl.Callback):
            def on_train_batch_start(self, *args):
                outer.start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, *args):
                now = time.perf_counter()
                outer.times.append(now - outer.start)
                if on_step:
                    on_step(module.codec, now - outer.begin)
                if seconds is not None and now - outer.begin >= seconds:
                    trainer.should_stop = True

        self.callback = Callback()


def codeclab_training(args, lmbda: float = 0.013, steps: int | None = None, seconds: float | None = None, on_step=None):
    """Step times of ``train.py``'s path (see the module docstring) for ``steps`` steps or ``seconds``."""
    import pytorch_lightning as pl

    from codeclab.codecs import mbt2018_mean
    from codeclab.data import ImageDataModule
    from codeclab.training import RateDistortionModule

    hook = _StepHook(seconds, on_step)
    budget = steps if steps is not None else 10**9
    data = ImageDataModule(train_dir=args.data, val_dir=None, patch_size=args.crop, batch_size=args.batch,
                           samples_per_epoch=args.batch * min(budget, 10**5), num_workers=0, preload=True)
    module = RateDistortionModule(
        mbt2018_mean(args.N, args.M), lmbda=lmbda, optimizer=lambda p: torch.optim.Adam(p, lr=args.lr),
        transform_dtype=None if args.fp32 else "bfloat16", channels_last=not args.fp32, compile=args.compile,
    )
    trainer = pl.Trainer(accelerator=args.device, devices=1, max_steps=budget if steps is not None else -1, max_epochs=-1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, callbacks=[hook.callback])
    trainer.fit(module, datamodule=data)
    return hook.times


def compressai_training(args, lmbda: float = 0.013, steps: int | None = None, seconds: float | None = None, on_step=None):
    """Step times of a compressai ``examples/train.py``-style loop (see the module docstring);
    ``on_step(model, elapsed)`` gets compressai's model."""
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

    begin = time.perf_counter()
    device = torch.device(args.device)
    loader = DataLoader(ImageFolder(list_images(args.data), transforms.Compose([transforms.RandomCrop(args.crop), transforms.ToTensor()])),
                        batch_size=args.batch, shuffle=True, num_workers=0, drop_last=True)
    net = MeanScaleHyperprior(args.N, args.M).to(device)
    main = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, lr=args.lr), torch.optim.Adam(aux, lr=1e-3)
    criterion = RateDistortionLoss(lmbda=lmbda)
    times, batches = [], iter(loader)
    while (steps is None or len(times) < steps) and (seconds is None or time.perf_counter() - begin < seconds):
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
        now = time.perf_counter()
        times.append(now - start)
        if on_step:
            on_step(net, now - begin)
    return times


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both training benchmarks share."""
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--N", type=int, default=128)
    parser.add_argument("--M", type=int, default=192)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(_common.DATA / "train" / "bsds500"), help="folder of training images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp32", action="store_true", help="codeclab without bf16 and channels-last")
    parser.add_argument("--compile", action="store_true", help="codeclab with torch.compile'd transforms")


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    add_arguments(parser)
    args = _common.parse(parser, argv, steps=2, warmup=1, rounds=1, **SMOKE)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("WANDB_MODE", "disabled")
    from codeclab.training.run import quiet_third_parties

    quiet_third_parties()
    times: dict[str, list[float]] = {"codeclab": [], "compressai": []}
    for _ in range(args.rounds):
        times["codeclab"] += codeclab_training(args, steps=args.steps + args.warmup)[args.warmup:]
        times["compressai"] += compressai_training(args, steps=args.steps + args.warmup)[args.warmup:]
    result = {name: {"steps_per_s": 1 / statistics.median(t), "timed_steps": len(t)} for name, t in times.items()}
    result["ratio"] = result["codeclab"]["steps_per_s"] / result["compressai"]["steps_per_s"]
    result["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    if args.json or args.json_file:
        _common.emit(args, result)
    else:
        print(f"codeclab {result['codeclab']['steps_per_s']:.2f} steps/s, compressai {result['compressai']['steps_per_s']:.2f} "
              f"steps/s: {result['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
