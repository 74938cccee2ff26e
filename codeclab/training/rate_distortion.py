"""Rate-distortion training of any :class:`~codeclab.codecs.Codec` with PyTorch Lightning.

Loss (Ballé et al. 2018; equal to compressai's ``RateDistortionLoss`` for one lambda, tested):
  * ``distortion="mse"``: ``L = mean_b(lmbda_b * 255^2 * MSE_b + bpp_b)``
  * ``distortion="ms-ssim"``: ``L = mean_b(lmbda_b * (1 - MS-SSIM_b) + bpp_b)``
where ``bpp_b = sum(-log2 likelihoods of sample b) / (H * W)`` is the estimated rate under
additive noise. A fixed-rate codec has one ``lmbda``; a variable-rate codec draws a rate level
per sample and uses that level's lambda (:mod:`codeclab.entropy_models.gain`).

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

import torch
from pytorch_msssim import ms_ssim

from ..codecs import Codec
from ..measures import psnr
from .codec_module import CodecModule


def _is_aux(name: str) -> bool:
    return name.endswith(".quantiles")


class RateDistortionModule(CodecModule):
    """Trains ``codec`` for one rate-distortion trade-off ``lmbda``.

    Args:
        codec: the codec to train.
        lmbda: Lagrange multiplier of the distortion term.
        distortion: ``"mse"`` or ``"ms-ssim"``.
        optimizer: callable ``params -> torch.optim.Optimizer`` (a Hydra partial); the
            quantiles are added to it as a second parameter group.
        aux_lr: learning rate of the quantiles' parameter group.
        lr_scheduler: optional callable ``optimizer -> LRScheduler``, stepped every step
            (:class:`WarmupPlateau` with the step's distortion).
        grad_clip: max gradient norm of the main parameters (0 disables clipping).
        transform_dtype: ``"bfloat16"`` runs the analysis and synthesis transforms under autocast
            (about 2x faster on CPUs with AVX-512 BF16); the entropy model stays float32.
        channels_last: keep the codec and the batches in channels-last memory format (about 15%
            faster with bf16 convolutions on this CPU).
        compile: ``torch.compile`` the analysis and synthesis transforms in place (parameter names
            unchanged; about 9% faster on this CPU after ~30 s of compilation).
        single_rate_steps: variable-rate codecs: the first steps train one rate only, QVRF's stage 1
            (level 0's gain at the largest lambda; bytedance/QRAF); 0: none.
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
        transform_dtype: str | None = None,
        channels_last: bool = False,
        compile: bool = False,
        single_rate_steps: int = 0,
    ):
        if distortion not in ("mse", "ms-ssim"):
            raise ValueError(f"distortion must be 'mse' or 'ms-ssim', got {distortion!r}")
        super().__init__(codec, lmbda=float(lmbda), distortion=distortion)
        codec.configure_transforms(getattr(torch, transform_dtype) if transform_dtype else None, channels_last)
        self.memory_format = codec.memory_format
        codec.to(memory_format=self.memory_format)
        if compile:
            codec.g_a.compile()
            codec.g_s.compile()
        self.lmbda, self.distortion = float(lmbda), distortion
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-4))
        self.scheduler_factory = lr_scheduler
        self.aux_lr, self.grad_clip = aux_lr, grad_clip
        self.single_rate_steps = int(single_rate_steps)

    def _random_levels(self, batch) -> torch.Tensor | None:
        """A random rate level per sample (variable-rate codecs), else None."""
        levels = self.codec.rate_levels
        return torch.randint(0, levels, (batch.shape[0],), device=batch.device) if levels else None

    def calibration_pass(self, batch) -> None:
        self._losses(batch, self._random_levels(batch))

    def _losses(self, x, level: torch.Tensor | None = None, lmbda=None) -> dict:
        """Losses of a batch; ``level`` ``[B]`` (variable-rate codecs) picks each sample's lambda
        (unless ``lmbda`` is given)."""
        out = self.codec(x, level)
        if lmbda is None:
            lmbda = self.lmbda if level is None else self.codec.entropy_model.gain_bank.lmbda(level)
        losses = rate_distortion_loss(out, x, lmbda, self.distortion)
        losses["psnr"] = psnr(torch.mean((out["x_hat"].clamp(0, 1) - x) ** 2))
        return losses

    def training_step(self, batch, batch_idx):
        batch = batch.contiguous(memory_format=self.memory_format)
        level = self._random_levels(batch)
        lmbda = None
        if level is not None and self.global_step < self.single_rate_steps:
            # QVRF's stage 1 (bytedance/QRAF commit 7d8da1f, train.py train_one_epoch: s = levels - 1
            # for the lambda; ScaleHyperprior.py forward: scale = Gain[0] detached): a single-rate
            # model at the largest lambda, quantised with level 0's gain (1).
            level = torch.zeros_like(level)
            lmbda = self.codec.entropy_model.gain_bank.lmbdas[-1]
        losses = self._losses(batch, level, lmbda)
        # Kept as a tensor: only WarmupPlateau reads it, and a float() here would sync the device every step.
        distortion = losses["mse_loss"] if "mse_loss" in losses else 1 - losses["ms_ssim_loss"]
        self.last_distortion = distortion.detach()
        aux_loss = self.codec.aux_loss()
        self.log_dict(
            {"train/loss": losses["loss"], "train/bpp": losses["bpp_loss"], "train/psnr": losses["psnr"], "train/aux": aux_loss},
            prog_bar=True, on_step=True, on_epoch=False,
        )
        return {"loss": losses["loss"] + aux_loss, "rd_loss": losses["loss"].detach()}

    def lr_scheduler_step(self, scheduler, metric):
        if isinstance(scheduler, WarmupPlateau):
            scheduler.step(float(self.last_distortion))
        else:
            super().lr_scheduler_step(scheduler, metric)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip_main_gradients(optimizer, self.grad_clip)

    def validation_step(self, batch, batch_idx):
        checked = validation_levels(self.codec)
        for suffix, level in checked.items():
            per_sample = None if level is None else torch.full((batch.shape[0],), level, device=batch.device)
            losses = self._losses(batch, per_sample)
            self.log_dict(
                {f"val/loss{suffix}": losses["loss"], f"val/bpp{suffix}": losses["bpp_loss"], f"val/psnr{suffix}": losses["psnr"]},
                prog_bar=not suffix, on_epoch=True, batch_size=batch.shape[0], sync_dist=True,
            )
        if batch_idx == 0:
            self.log_real_bpp(batch, checked[""], sync_dist=True)

    def configure_optimizers(self):
        named = list(self.codec.named_parameters())
        main = [p for n, p in named if not _is_aux(n) and p.requires_grad]
        aux = [p for n, p in named if _is_aux(n)]
        optimizer = self.optimizer_factory(main)
        optimizer.add_param_group({"params": aux, "lr": self.aux_lr})
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}


def clip_main_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Clip the gradient norm of the first parameter group (the main parameters; not the quantiles)."""
    if max_norm:
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], max_norm)


def validation_levels(codec: Codec) -> dict:
    """``{metric suffix: level}`` validated: the lowest, middle and highest levels of a variable-rate
    codec (``"val/<metric>"`` is the middle one), or ``{"": None}`` for a fixed-rate codec."""
    levels = codec.rate_levels
    return {"": None} if not levels else {"": levels // 2, "_lowest": 0, "_highest": levels - 1}


def epoch_multistep(optimizer: torch.optim.Optimizer, milestones, gamma: float = 0.1, steps_per_epoch: int = 1):
    """``torch.optim.lr_scheduler.MultiStepLR`` stepped once per epoch, as a per-step schedule: the
    learning rate is multiplied by ``gamma`` at each of the epochs ``milestones``
    (``steps_per_epoch`` training steps each)."""
    milestones = sorted(int(m) for m in milestones)

    def factor(step: int) -> float:
        epoch = step // max(1, int(steps_per_epoch))
        return gamma ** sum(epoch >= m for m in milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def cosine_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.1):
    """Linear warm-up, then cosine decay of the learning rate to ``min_factor`` of its start."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class WarmupPlateau:
    """WaLLoC's learning-rate schedule (Jacobellis & Yadwadkar; ``danjacobellis/walloc``,
    ``train_rgb``, released RGB model v1.0.2): every ``update_every`` steps,

    * before ``warmup_steps``: a cosine warm-up in the log domain from the optimizer's learning
      rate ``min_lr`` to ``max_lr``: after ``k`` updates of ``K = warmup_steps // update_every``,
      ``log10 lr = log10 min_lr + (log10 max_lr - log10 min_lr) (1 - cos(pi k / K)) / 2``;
    * then ``ReduceLROnPlateau(factor, patience, threshold, min_lr)`` on the mean ``log10`` of the
      distortion (MSE, or 1 - MS-SSIM) over those ``update_every`` steps.

    Only the main parameter group follows it (the quantiles keep their own learning rate).
    Call :meth:`step` once per training step with that step's distortion.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float, warmup_steps: int = 50000,
                 update_every: int = 128, factor: float = 0.98, patience: int = 64, threshold: float = 1e-5):
        groups = optimizer.param_groups
        min_lr = groups[0]["lr"]
        if not 0 < min_lr < max_lr:
            raise ValueError(f"the optimizer's lr ({min_lr}) is the warm-up's start and must be in (0, max_lr={max_lr})")
        updates = max(1, warmup_steps // update_every)
        decades = math.log10(max_lr / min_lr)

        def warmup_factor(k: int) -> float:
            return 10 ** (0.5 * decades * (1 - math.cos(math.pi * min(k, updates) / updates)))

        others = [lambda k: 1.0] * (len(groups) - 1)
        self.optimizer, self.warmup_steps, self.update_every = optimizer, warmup_steps, update_every
        self.warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, [warmup_factor, *others])
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=factor, patience=patience, threshold=threshold,
            min_lr=[min_lr, *(group["lr"] for group in groups[1:])])
        self.steps, self.window = 0, []

    def step(self, distortion: float) -> None:
        self.window.append(math.log10(max(distortion, 1e-12)))
        self.steps += 1
        if self.steps % self.update_every:
            return
        smoothed, self.window = sum(self.window) / len(self.window), []
        if self.steps <= self.warmup_steps:
            self.warmup.step()
        else:
            self.plateau.step(smoothed)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"steps": self.steps, "window": list(self.window), "warmup": self.warmup.state_dict(),
                "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.window = state["steps"], list(state["window"])
        self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])


def estimated_bpp(likelihoods: dict, batch: torch.Tensor, pixels: int) -> torch.Tensor:
    """``[B]``: ``-sum(log2 likelihoods)`` of each sample of ``batch`` (any ``[B, ...]`` tensor of it)
    over ``pixels``. No likelihoods (a codec trained for distortion only, as WaLLoC): zero."""
    size = batch.shape[0]
    bits = sum((torch.log(lik).reshape(size, -1).sum(1) for lik in likelihoods.values()), batch.new_zeros(size))
    return bits / (-math.log(2) * pixels)


def rate_distortion_loss(out: dict, x: torch.Tensor, lmbda, distortion: str = "mse") -> dict:
    """``{"loss", "bpp_loss", "mse_loss" | "ms_ssim_loss"}`` of a forward pass ``out`` on ``x``;
    ``lmbda`` is a float or one lambda per sample ``[B]`` (see the module docstring)."""
    batch, _, height, width = x.shape
    bpp = estimated_bpp(out["likelihoods"], x, height * width)
    losses = {"bpp_loss": bpp.mean()}
    if distortion == "mse":
        mse = ((out["x_hat"] - x) ** 2).reshape(batch, -1).mean(1)
        losses["mse_loss"], per_sample = mse.mean(), 255**2 * mse
    else:
        similarity = ms_ssim(out["x_hat"], x, data_range=1.0, size_average=False)
        losses["ms_ssim_loss"], per_sample = similarity.mean(), 1 - similarity
    losses["loss"] = (lmbda * per_sample + bpp).mean()
    return losses
