"""Rate-distortion training of any :class:`~codeclab.codecs.Codec` with PyTorch Lightning.

Loss (compressai's ``RateDistortionLoss``, Ballé et al. 2018):
  * ``distortion="mse"``: ``L = lmbda * 255^2 * MSE(x, x_hat) + bpp``
  * ``distortion="ms-ssim"``: ``L = lmbda * (1 - MS-SSIM(x, x_hat)) + bpp``
where ``bpp = sum(-log2 likelihoods) / (B * H * W)`` is the estimated rate under additive noise.

The entropy bottleneck's quantiles (which only set the range of its CDF tables) are trained on
compressai's ``aux_loss`` alone: the rate-distortion loss does not depend on them (training
uses noise, not medians) and ``aux_loss`` stops gradients into the density, so one backward pass
of ``L + aux_loss`` with a separate parameter group (own learning rate) is equivalent to
compressai's two-optimiser recipe and keeps one optimiser step per training step. Gradient
clipping applies to the main parameters only (the aux gradients are large by design).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from compressai.losses import RateDistortionLoss

from ..codecs import Codec
from ..measures import bits_per_pixel, psnr


def _is_aux(name: str) -> bool:
    return name.endswith(".quantiles")


class RateDistortionModule(pl.LightningModule):
    """Trains ``codec`` for one rate-distortion trade-off ``lmbda``.

    Args:
        codec: the codec to train.
        lmbda: Lagrange multiplier of the distortion term.
        distortion: ``"mse"`` or ``"ms-ssim"``.
        optimizer: callable ``params -> torch.optim.Optimizer`` (a Hydra partial); the
            quantiles are added to it as a second parameter group.
        aux_lr: learning rate of the quantiles' parameter group.
        lr_scheduler: optional callable ``optimizer -> LRScheduler``, stepped every step.
        grad_clip: max gradient norm of the main parameters (0 disables clipping).
    """

    def __init__(
        self,
        codec: Codec,
        lmbda: float = 0.0067,
        distortion: str = "mse",
        optimizer: Callable | None = None,
        aux_lr: float = 1e-3,
        lr_scheduler: Callable | None = None,
        grad_clip: float = 1.0,
    ):
        super().__init__()
        if distortion not in ("mse", "ms-ssim"):
            raise ValueError(f"distortion must be 'mse' or 'ms-ssim', got {distortion!r}")
        self.codec = codec
        self.criterion = RateDistortionLoss(lmbda=lmbda, metric=distortion)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-4))
        self.scheduler_factory = lr_scheduler
        self.aux_lr, self.grad_clip = aux_lr, grad_clip
        # Plain types only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {"codec_id": codec.codec_id, "codec_config": dict(codec.config), "lmbda": float(lmbda), "distortion": distortion}
        )

    def forward(self, x):
        return self.codec(x)

    def _losses(self, x) -> dict:
        out = self.codec(x)
        losses = self.criterion(out, x)
        mse = torch.mean((out["x_hat"].clamp(0, 1) - x) ** 2)
        losses["psnr"] = psnr(mse)
        return losses

    def training_step(self, batch, batch_idx):
        losses = self._losses(batch)
        aux_loss = self.codec.aux_loss()
        self.log_dict(
            {"train/loss": losses["loss"], "train/bpp": losses["bpp_loss"], "train/psnr": losses["psnr"], "train/aux": aux_loss},
            prog_bar=True, on_step=True, on_epoch=False,
        )
        return {"loss": losses["loss"] + aux_loss, "rd_loss": losses["loss"].detach()}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], self.grad_clip)

    def validation_step(self, batch, batch_idx):
        losses = self._losses(batch)
        self.log_dict(
            {"val/loss": losses["loss"], "val/bpp": losses["bpp_loss"], "val/psnr": losses["psnr"]},
            prog_bar=True, on_epoch=True, batch_size=batch.shape[0],
        )
        if batch_idx == 0:
            # Real coding of one crop: the estimated rate is only useful if real bytes follow it.
            compressed = self.codec.compress(batch[:1])
            real_bpp = bits_per_pixel(sum(map(len, compressed.strings)), batch.shape[-2], batch.shape[-1])
            self.log("val/real_bpp", real_bpp, batch_size=1)

    def configure_optimizers(self):
        named = list(self.codec.named_parameters())
        main = [p for n, p in named if not _is_aux(n) and p.requires_grad]
        aux = [p for n, p in named if _is_aux(n)]
        optimizer = self.optimizer_factory(main)
        optimizer.add_param_group({"params": aux, "lr": self.aux_lr})
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}


def cosine_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.1):
    """Linear warm-up, then cosine decay of the learning rate to ``min_factor`` of its start."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
