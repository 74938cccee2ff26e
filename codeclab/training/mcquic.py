"""Training of the McQuic codec (Zhu et al., CVPR 2022; official trainer xiaosu-zhu/McQuic,
``mcquic/train/trainer.py`` and ``mcquic/loss``).

The rate is fixed by the configuration (``m``, ``K``, levels), so the loss is distortion only::

    L = D(x, x_hat) + cosine_weight * mean_{codebooks} mean_{k != k'} cos(c_k, c_k')^2
    D = MSE (distortion="mse") or 1 - MS-SSIM (distortion="ms-ssim")

Gradients reach the encoder through the hard Gumbel-softmax (straight-through) of every level.
Each training forward updates the code-frequency EMA (the static entropy-coding tables); every
``reassign_every`` steps the dead codewords are overwritten by the most used ones (the
official ``CodebookReassign`` hook). Optimiser: apex's FusedLAMB as McQuic's 2022 code and
commit 3dc1a82 (:class:`.lamb.FusedLamb`: bias correction, weight decay 0.01, global gradient
clipping at 1), learning rate 2e-4 (the official config's comment: 5e-3 for PSNR); torch-optimizer's
Lamb, which CodecLab first used, is ``module.optimizer._target_=codeclab.training.lamb.Lamb``.
Cosine annealing with warm restarts, stepped every step.

Deviations: the official "PSNR" target is ``(MSE + L1) / 2`` on images in ``[-1, 1]``; here MSE
on ``[0, 1]`` (the issue's choice). The official scheduler (``CosineAnnealingWarmupRestarts``
with a warm-up and a decaying peak, stepped per epoch) is torch's ``CosineAnnealingWarmRestarts``
stepped per step; the reassignment period counts steps, not epochs. The codebook-cosine term
is an optional regulariser (weight 0 by default, as the official configs' regularisation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_msssim import ms_ssim

from ..codecs.mcquic import McQuic
from ..measures import psnr
from .codec_module import CodecModule
from .lamb import FusedLamb


class McQuicModule(CodecModule):
    """Trains a :class:`~codeclab.codecs.mcquic.McQuic` codec.

    Args:
      codec: the McQuic codec.
      distortion: ``"mse"`` or ``"ms-ssim"``.
      optimizer: callable ``params -> Optimizer`` (default apex's FusedLAMB at 2e-4, :class:`.lamb.FusedLamb`).
      lr_scheduler: optional callable ``optimizer -> LRScheduler``, stepped every step.
      cosine_weight: weight of the codebook-cosine penalty (0: off).
      reassign_every: steps between dead-codeword reassignments (0: never).
    """

    def __init__(self, codec: McQuic, distortion: str = "mse", optimizer: Callable | None = None,
                 lr_scheduler: Callable | None = None, cosine_weight: float = 0.0, reassign_every: int = 0):
        if distortion not in ("mse", "ms-ssim"):
            raise ValueError(f"distortion must be 'mse' or 'ms-ssim', got {distortion!r}")
        super().__init__(codec, distortion=distortion, cosine_weight=float(cosine_weight))
        self.distortion = distortion
        self.optimizer_factory = optimizer or (lambda params: FusedLamb(params, lr=2e-4))
        self.scheduler_factory = lr_scheduler
        self.cosine_weight, self.reassign_every = float(cosine_weight), int(reassign_every)

    def losses(self, x: torch.Tensor) -> dict:
        """``{"loss", "distortion", "cosine", "psnr", "bpp"}`` of a batch (``bpp``: the static tables' estimate)."""
        out = self.codec(x)
        x_hat = out["x_hat"]
        if self.distortion == "mse":
            distortion = torch.mean((x_hat - x) ** 2)
        else:
            distortion = 1 - ms_ssim(x_hat, x, data_range=1.0)
        cosine = self.codec.quantizer.codebook_cosine_penalty() if self.cosine_weight else x.new_zeros(())
        bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
        return {"loss": distortion + self.cosine_weight * cosine, "distortion": distortion.detach(), "cosine": cosine.detach(),
                "psnr": psnr(torch.mean((x_hat.detach().clamp(0, 1) - x) ** 2)),
                "bpp": bits / (x.shape[0] * x.shape[-2] * x.shape[-1])}

    def training_step(self, batch, batch_idx):
        losses = self.losses(batch)
        usage = torch.cat([(lv.freq_ema > 1e-6 * lv.freq_ema.sum(-1, keepdim=True)).flatten()
                           for lv in self.codec.quantizer.levels]).float().mean()
        self.log_dict({"train/loss": losses["loss"], "train/psnr": losses["psnr"], "train/bpp": losses["bpp"],
                       "train/code_usage": usage}, prog_bar=True, on_step=True, on_epoch=False)
        return losses["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx):
        step = int(self.global_step)
        if self.reassign_every and step and step % self.reassign_every == 0:
            self.log("train/reassigned", self.codec.quantizer.reassign_dead_codewords(), on_step=True, on_epoch=False)

    def validation_step(self, batch, batch_idx):
        losses = self.losses(batch)
        self.log_dict({"val/loss": losses["loss"], "val/psnr": losses["psnr"], "val/bpp": losses["bpp"]},
                      prog_bar=True, on_epoch=True, batch_size=batch.shape[0])
        if batch_idx == 0:
            self.log_real_bpp(batch)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.codec.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}
