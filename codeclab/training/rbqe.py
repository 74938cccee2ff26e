"""Training RBQE (:mod:`codeclab.postfilters.rbqe`): deep supervision of its five exits on
training crops compressed on the fly.

The official RBQE repository has no training code; the loss is the author's later PowerQE
recipe for it (ryanxingql/powerqe ``algorithm/rbqe.py``, ``opts/rbqe.yml``): for each sample
of quality q, ``sum_k w[q][k] * MSE(exit_k, clean)`` averaged over the batch, where the weights
put the lightest compression (QF 50) on the shallow exits and the heaviest (QF 10) on the deep
ones (:data:`EXIT_WEIGHTS`); Adam at 1e-4. Each crop is compressed with Pillow's JPEG at a
quality drawn from :data:`JPEG_QUALITIES` (the paper's QF 10-50; Pillow as the paper), and the
network sees the BT.601 full-range Y planes, rounded to 8 bits, of both.

Validation (held-apart images, never Kodak) codes each centre crop at every quality and logs the
Y-PSNR gain of the last exit, ``val/delta_psnr`` (mean over qualities), and of each quality.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.colour import rgb_to_ycbcr, to_uint8
from ..measures import psnr
from ..postfilters import RBQE
from .network_module import NetworkModule

JPEG_QUALITIES = (10, 20, 30, 40, 50)
# Exit weights (exits 1..5) per JPEG quality (PowerQE's, from HEVC QP 22..42 and QF 50..10).
EXIT_WEIGHTS = {
    50: (2.0, 1.0, 1.0, 0.5, 0.5),
    40: (1.0, 2.0, 1.0, 0.5, 0.5),
    30: (0.5, 1.0, 2.0, 1.0, 0.5),
    20: (0.5, 0.5, 1.0, 2.0, 1.0),
    10: (0.5, 0.5, 1.0, 1.0, 2.0),
}


def luma(rgb: np.ndarray) -> np.ndarray:
    """The 8-bit BT.601 full-range Y plane of ``[H, W, 3]`` uint8 RGB."""
    return to_uint8(rgb_to_ycbcr(rgb, "bt601", "full")[..., 0])


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` (uint8) through Pillow's JPEG at ``quality``, decoded."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


def compressed_pairs(batch: torch.Tensor, qualities) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 3, H, W]`` crops in [0, 1] and one JPEG quality per crop -> the compressed and the
    clean Y planes, ``[B, 1, H, W]`` in [0, 1]."""
    compressed, clean = [], []
    for crop, quality in zip(batch, qualities):
        rgb = (crop.detach().cpu().permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        compressed.append(luma(jpeg(rgb, quality)))
        clean.append(luma(rgb))
    as_tensor = lambda planes: torch.from_numpy(np.stack(planes)[:, None].astype(np.float32) / 255).to(batch.device)  # noqa: E731
    return as_tensor(compressed), as_tensor(clean)


class RBQEModule(NetworkModule):
    """Trains an :class:`~codeclab.postfilters.RBQE` (``network``) on JPEG-compressed crops.

    Args:
        network: the RBQE network.
        qualities: the JPEG qualities drawn (uniformly, one per crop); each needs an entry in
            :data:`EXIT_WEIGHTS`.
        optimizer: callable ``params -> Optimizer`` (a Hydra partial).
        lr_scheduler: optional callable ``optimizer -> LRScheduler``, stepped every step.
        grad_clip: max gradient norm (0: none; the recipe has none).
    """

    kind = "postfilter"

    def __init__(self, network: RBQE, qualities=JPEG_QUALITIES, optimizer: Callable | None = None,
                 lr_scheduler: Callable | None = None, grad_clip: float = 0.0):
        unknown = sorted(set(qualities) - set(EXIT_WEIGHTS))
        if unknown:
            raise ValueError(f"no exit weights for JPEG quality {unknown[0]}; known: {sorted(EXIT_WEIGHTS)}")
        super().__init__(network, optimizer, lr_scheduler, qualities=[int(q) for q in qualities], grad_clip=grad_clip)
        self.qualities = tuple(int(q) for q in qualities)
        self.grad_clip = grad_clip

    def loss(self, outputs: list[torch.Tensor], clean: torch.Tensor, qualities) -> torch.Tensor:
        """``mean_b sum_k w[q_b][k] MSE_b(exit_k, clean)``."""
        weights = torch.tensor([EXIT_WEIGHTS[q] for q in qualities], device=clean.device)
        mse = torch.stack([F.mse_loss(out, clean, reduction="none").mean(dim=(1, 2, 3)) for out in outputs], dim=1)
        return (weights * mse).sum(dim=1).mean()

    def training_step(self, batch, batch_idx):
        draws = torch.randint(len(self.qualities), (batch.shape[0],)).tolist()
        qualities = [self.qualities[i] for i in draws]
        compressed, clean = compressed_pairs(batch, qualities)
        outputs = self.network(compressed)
        loss = self.loss(outputs, clean, qualities)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/delta_psnr_last_exit", psnr(F.mse_loss(outputs[-1], clean)) - psnr(F.mse_loss(compressed, clean)))
        return loss

    def validation_step(self, batch, batch_idx):
        gains = []
        for quality in self.qualities:
            compressed, clean = compressed_pairs(batch, [quality] * batch.shape[0])
            h, w = clean.shape[-2:]
            enhanced = self.network(self.network.pad_to_exits(compressed))[-1][..., :h, :w].clamp(0, 1)
            gain = psnr(F.mse_loss(enhanced, clean)) - psnr(F.mse_loss(compressed, clean))
            self.log(f"val/delta_psnr_qf{quality}", gain, batch_size=batch.shape[0])
            gains.append(gain)
        self.log("val/delta_psnr", torch.stack(gains).mean(), prog_bar=True, batch_size=batch.shape[0])
        # The checkpoint callback minimises val/loss: the negative gain.
        self.log("val/loss", -torch.stack(gains).mean(), batch_size=batch.shape[0])

    def on_before_optimizer_step(self, optimizer):
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip)
