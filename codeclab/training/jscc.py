"""Training a JSCC model (:mod:`codeclab.jscc`) over its simulated channel.

As SwinJSCC's official ``main.py`` / ``net/network.py``: each batch draws one SNR (dB) and one
channel count C uniformly from the model's training lists, the loss is the MSE on the 0-255
scale against the output clamped to [0, 1], Adam 1e-4. Validation (held-apart images, never
Kodak, noise seeded so epochs compare) logs the PSNR at the lowest and highest training SNR for
every C, and their mean as ``val/psnr`` (``val/loss`` is its negative, for the checkpoints).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..jscc import SwinJSCC
from ..measures import psnr
from .network_module import NetworkModule


def jscc_loss(output: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """MSE on the 0-255 scale, the output clamped to [0, 1] (official ``Distortion`` with MSE)."""
    return F.mse_loss(output.clamp(0, 1) * 255, image * 255)


class JSCCModule(NetworkModule):
    """Trains ``network`` (e.g. :class:`~codeclab.jscc.SwinJSCC`) end to end through its channel.

    Args:
        network: the JSCC model (its ``snrs`` and ``channels`` are the training lists).
        optimizer: callable ``params -> Optimizer`` (a Hydra partial).
        lr_scheduler: optional callable ``optimizer -> LRScheduler``, stepped every step.
    """

    kind = "jscc"

    def __init__(self, network: SwinJSCC, optimizer: Callable | None = None, lr_scheduler: Callable | None = None):
        super().__init__(network, optimizer, lr_scheduler)

    def training_step(self, batch, batch_idx):
        snr, channels = random.choice(self.network.snrs), random.choice(self.network.channels)
        output, cbr = self.network(batch, snr, channels)
        loss = jscc_loss(output, batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/psnr", psnr(loss.detach() / 255**2))
        return loss

    def validation_step(self, batch, batch_idx):
        values = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(batch_idx)
            for snr in sorted({min(self.network.snrs), max(self.network.snrs)}):
                for channels in self.network.channels:
                    output, _ = self.network(batch, snr, channels)
                    value = psnr(F.mse_loss(output.clamp(0, 1), batch))
                    self.log(f"val/psnr_snr{snr:g}_c{channels}", value, batch_size=batch.shape[0])
                    values.append(value)
        mean = torch.stack(values).mean()
        self.log("val/psnr", mean, prog_bar=True, batch_size=batch.shape[0])
        self.log("val/loss", -mean, batch_size=batch.shape[0])
