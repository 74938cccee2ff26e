"""Adversarial training of the VQGAN codec (Esser et al. 2021, taming's ``VQLPIPSWithDiscriminator``).

Generator loss, images scaled to [-1, 1] (``x``, ``x_hat``)::

    L_rec = mean|x - x_hat| + w_p * LPIPS(x, x_hat)          (LPIPS only with local weights)
    L_G   = L_rec + w_vq * L_vq + [step >= disc_start] * lambda * (-mean D(x_hat))
    lambda = w_d * ||grad_last L_rec|| / (||grad_last (-mean D(x_hat))|| + 1e-4)   (clamped to [0, 1e4])

with ``grad_last`` the gradient at the decoder's last convolution (the adaptive weight of
VQGAN). Discriminator (PatchGAN, hinge loss), from ``disc_start`` on::

    L_D = 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))

Manual optimisation: one Adam step of the generator (VQGAN parameters only; the index models
are fitted afterwards by :mod:`codeclab.training.vqgan_ladder`) and one of the discriminator per batch.
Lightning counts every optimiser step in ``trainer.global_step``, so ``trainer.max_steps``
counts discriminator steps too; ``disc_start`` counts batches.

Codebook collapse is common in short runs; with ``restart_dead_every = N`` every ``N`` batches
the codewords no batch has used since the last restart are re-initialised to encoder outputs
of the current batch (a standard VQ remedy, not part of taming).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..codecs.vqgan import VQGAN
from ..measures import psnr
from .codec_module import CodecModule
from .losses import LPIPS, PatchDiscriminator


class VQGANModule(CodecModule):
    """Trains a :class:`~codeclab.codecs.vqgan.VQGAN` with a PatchGAN discriminator.

    Args:
      codec: the VQGAN codec.
      lr, betas: Adam settings of both optimisers (taming: 4.5e-6 x batch size, (0.5, 0.9)).
      codebook_weight: ``w_vq``.
      perceptual_weight: ``w_p``; used only when ``lpips_vgg`` and ``lpips_lin`` name local files.
      lpips_vgg, lpips_lin: weight files of :class:`LPIPS` (None: L1-only reconstruction loss).
      disc_start: batches before the adversarial terms start (taming: 250001 for ImageNet f16).
      disc_weight: ``w_d``; disc_ndf, disc_layers: PatchGAN width and depth.
      restart_dead_every: dead-codeword restart period in batches (0: never).
      trainable: ``"all"`` (the VQGAN proper) or ``"quantizer"`` (Mao et al.'s ``VQ_Frozen``:
        ``quant_conv``, codebook and ``post_quant_conv`` only; encoder and decoder frozen, the
        full loss and the discriminator as in training).
    """

    def __init__(self, codec: VQGAN, lr: float = 4.5e-6, betas=(0.5, 0.9), codebook_weight: float = 1.0,
                 perceptual_weight: float = 1.0, lpips_vgg: str | None = None, lpips_lin: str | None = None,
                 disc_start: int = 250001, disc_weight: float = 0.8, disc_ndf: int = 64, disc_layers: int = 3,
                 restart_dead_every: int = 0, trainable: str = "all"):
        if trainable not in ("all", "quantizer"):
            raise ValueError(f"trainable must be 'all' or 'quantizer', got {trainable!r}")
        super().__init__(codec, lr=float(lr), disc_start=int(disc_start), disc_weight=float(disc_weight),
                         perceptual=bool(lpips_vgg and lpips_lin))
        self.trainable = trainable
        self.automatic_optimization = False
        self.discriminator = PatchDiscriminator(3, disc_ndf, disc_layers)
        self.lpips = LPIPS(lpips_vgg, lpips_lin) if lpips_vgg and lpips_lin else None
        self.lr, self.betas = float(lr), tuple(betas)
        self.codebook_weight, self.perceptual_weight = float(codebook_weight), float(perceptual_weight)
        self.disc_start, self.disc_weight = int(disc_start), float(disc_weight)
        self.restart_dead_every = int(restart_dead_every)
        self.register_buffer("batches_done", torch.zeros((), dtype=torch.int64))
        self.register_buffer("used_codes", torch.zeros(codec.n_embed, dtype=torch.bool))

    def _reconstruction_loss(self, x, x_hat):
        """``L_rec`` on images in [-1, 1]."""
        loss = (x - x_hat).abs().mean()
        if self.lpips is not None:
            loss = loss + self.perceptual_weight * self.lpips(x, x_hat).mean()
        return loss

    def _adaptive_weight(self, rec_loss, g_loss):
        last = self.codec.decoder.last_layer
        rec_grad = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
        return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach() * self.disc_weight

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor) -> int:
        dead = (~self.used_codes).nonzero().flatten()
        if dead.numel():
            vectors = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
            pick = torch.randint(0, vectors.shape[0], (dead.numel(),), device=z.device)
            self.codec.vector_quantizer.embedding.weight[dead] = vectors[pick] + 1e-3 * torch.randn_like(vectors[pick])
        self.used_codes.zero_()
        return int(dead.numel())

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        x = 2 * batch - 1
        z = self.codec.encode_latent(batch)
        z_q, vq_loss, indices = self.codec.vector_quantizer(z)
        x_hat = 2 * self.codec.decode_codewords(z_q) - 1
        rec_loss = self._reconstruction_loss(x, x_hat)
        loss = rec_loss + self.codebook_weight * vq_loss
        adversarial = int(self.batches_done) >= self.disc_start
        logs = {"train/rec": rec_loss.detach(), "train/vq": vq_loss.detach()}
        if adversarial:
            g_loss = -self.discriminator(x_hat).mean()
            d_weight = self._adaptive_weight(rec_loss, g_loss)
            loss = loss + d_weight * g_loss
            logs.update({"train/g": g_loss.detach(), "train/d_weight": d_weight})
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()
        if adversarial:
            d_loss = 0.5 * (F.relu(1 - self.discriminator(x.detach())).mean()
                            + F.relu(1 + self.discriminator(x_hat.detach())).mean())
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
            logs["train/d"] = d_loss.detach()
        self.used_codes[indices.unique()] = True
        self.batches_done += 1
        if self.restart_dead_every and int(self.batches_done) % self.restart_dead_every == 0:
            logs["train/restarted"] = float(self._restart_dead_codes(z.detach()))
        mse = torch.mean((batch - ((x_hat.detach() + 1) / 2).clamp(0, 1)) ** 2)
        logs["train/psnr"] = psnr(mse)
        logs["train/codes_in_batch"] = float(indices.unique().numel())
        self.log_dict(logs, prog_bar=True, on_step=True, on_epoch=False)

    def validation_step(self, batch, batch_idx):
        x_hat = self.codec(batch)["x_hat"].clamp(0, 1)
        val_psnr = psnr(torch.mean((x_hat - batch) ** 2))
        self.log("val/psnr", val_psnr, prog_bar=True, on_epoch=True, batch_size=batch.shape[0])
        if batch_idx == 0:
            self.log_real_bpp(batch)

    def configure_optimizers(self):
        # The frozen parts still get gradients (the adaptive GAN weight needs the decoder's last
        # layer), but no optimiser moves them.
        modules = self.codec.vq_modules() if self.trainable == "all" else self.codec.quantizer_modules()
        generator = [p for module in modules for p in module.parameters()]
        opt_g = torch.optim.Adam(generator, lr=self.lr, betas=self.betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)
        return [opt_g, opt_d]
