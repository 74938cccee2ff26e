"""The VQGAN variable-rate ladder (Mao et al. 2024): K-means codebooks, codebook-only fine-tuning,
fitted index models, one model file per codebook size.

    python ladder.py model=MODEL images=DIR sizes=[1024,256,64,16] [output_dir=DIR]

``MODEL`` is a VQGAN model file or a Lightning checkpoint of :class:`~codeclab.training.vqgan.VQGANModule`
(configuration: ``configs/ladder.yaml``). For every ``K'`` in ``sizes``:

1. **K-means** (scikit-learn's ``KMeans``, k-means++ init, Lloyd iterations) into ``K'``
   centres (the trained codebook itself when ``K'`` equals its size): ``kmeans=plain`` (default,
   Mao et al.) clusters every codeword of the codebook, unweighted; ``kmeans=usage`` clusters the
   codewords the training images use, each weighted by its usage count.
2. **Fine-tuning**, ``finetune=mao`` (default, Mao et al.'s ``VQ_Frozen``): encoder and
   decoder frozen, ``quant_conv``, the codebook and ``post_quant_conv`` trained with the full
   VQGAN loss (L1, LPIPS when given, the VQ loss, the adversarial term from the first step)
   against a PatchGAN discriminator, on random crops (:class:`~codeclab.training.vqgan.VQGANModule`
   with ``trainable="quantizer"``). ``finetune=codebook``: CodecLab's first recipe, Adam on the
   codebook ``E`` alone with ``mean|x - D(E[i(z)])| + mean((sg[z] - E[i(z)])^2)`` (images in
   [-1, 1], ``i`` recomputed as ``E`` moves), optionally plus LPIPS.
3. **Index models**: the static table is the histogram of the training indices; the
   masked-token transformer is trained on the training index grids (coding and random masks).
4. Export ``vqgan_K{K'}.safetensors`` and a line of ``ladder.json`` (losses, usage, entropies).

Encoder outputs are computed once per training image (the encoder is frozen from here on), so
every rung reuses them. Training images are centre-cropped to ``crop`` (portrait images are
transposed to landscape) so each gives one ``crop/16`` index grid.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from ..codecs.vqgan import VQGAN, vqgan
from ..entropy_models.index_models import INDEX_MODEL_IDS
from ..data.images import list_images, read_image, to_tensor
from ..errors import CodecLabError
from ..formats.model_file import export_model, load_checkpoint, load_model


def load_vqgan(path: str | Path) -> VQGAN:
    """A VQGAN from a model file or a :class:`VQGANModule` Lightning checkpoint."""
    path = Path(path)
    codec = load_model(path).train() if path.suffix == ".safetensors" else load_checkpoint(path)
    if not isinstance(codec, VQGAN):
        raise CodecLabError(f"{path} holds a {codec.codec_id!r} model, not a VQGAN")
    return codec


def training_images(folder: str | Path, crop: tuple[int, int], limit: int | None) -> torch.Tensor:
    """Centre crops ``[N, 3, crop_h, crop_w]`` in [0, 1] of the images in ``folder`` (landscape)."""
    crops = []
    for path in list_images(folder)[:limit]:
        image = read_image(path, notice=None)
        if image.shape[0] > image.shape[1]:
            image = image.transpose(1, 0, 2)
        h, w = image.shape[:2]
        if h < crop[0] or w < crop[1]:
            continue
        top, left = (h - crop[0]) // 2, (w - crop[1]) // 2
        crops.append(to_tensor(image[top : top + crop[0], left : left + crop[1]]))
    return torch.stack(crops)


@torch.no_grad()
def encode_all(codec: VQGAN, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Encoder outputs ``z`` ``[N, D, h, w]`` of ``images``."""
    return torch.cat([codec.encode_latent(images[i : i + batch]) for i in range(0, len(images), batch)])


KMEANS = ("plain", "usage")


def kmeans_codebook(codebook: torch.Tensor, usage: torch.Tensor, size: int, seed: int = 0,
                    weighting: str = "plain") -> torch.Tensor:
    """``size`` K-means centres ``[size, D]``: of every row of ``codebook`` (``"plain"``, Mao et al.)
    or of the used rows weighted by ``usage`` (``"usage"``)."""
    if weighting not in KMEANS:
        raise ValueError(f"weighting must be one of {', '.join(KMEANS)}, got {weighting!r}")
    rows = usage > 0 if weighting == "usage" else torch.ones_like(usage, dtype=torch.bool)
    if int(rows.sum()) < size:
        raise ValueError(f"only {int(rows.sum())} codewords to cluster; cannot make {size} centres")
    weights = usage[rows].double().numpy() if weighting == "usage" else None
    km = KMeans(n_clusters=size, n_init=3, random_state=seed)
    km.fit(codebook[rows].double().numpy(), sample_weight=weights)
    return torch.from_numpy(km.cluster_centers_).float()


def reduced_codec(base: VQGAN, centres: torch.Tensor, index_model: str | None = None) -> VQGAN:
    """A copy of ``base`` whose codebook is ``centres`` (``K'`` rows); fresh index models;
    ``index_model`` (default: ``base``'s) becomes the model file's default index model."""
    config = dict(base.config, n_embed=int(centres.shape[0]), index_model=index_model or base.index_model)
    codec = vqgan(**config)
    shared = {k: v for k, v in base.state_dict().items() if k.startswith(("g_a.", "g_s."))}
    codec.load_state_dict({**codec.state_dict(), **shared, "entropy_model.vector_quantizer.embedding.weight": centres})
    return codec


def _random_windows(z: torch.Tensor, images: torch.Tensor, batch: int, tokens: int, f: int):
    """A batch of aligned windows: ``tokens x tokens`` of ``z`` and the matching image region."""
    n, _, h, w = z.shape
    pick = torch.randint(0, n, (batch,))
    top = torch.randint(0, h - tokens + 1, (batch,))
    left = torch.randint(0, w - tokens + 1, (batch,))
    zs = torch.stack([z[p, :, t : t + tokens, l : l + tokens] for p, t, l in zip(pick, top, left)])
    xs = torch.stack([images[p, :, t * f : (t + tokens) * f, l * f : (l + tokens) * f] for p, t, l in zip(pick, top, left)])
    return zs, xs


def finetune_codebook(codec: VQGAN, z: torch.Tensor, images: torch.Tensor, steps: int, lr: float = 1e-3,
                      batch: int = 8, tokens: int = 8, lpips=None) -> list[float]:
    """Codebook-only fine-tuning (encoder/decoder frozen); returns the loss every step."""
    codec.requires_grad_(False)
    weight = codec.vector_quantizer.embedding.weight
    weight.requires_grad_(True)
    optimizer = torch.optim.Adam([weight], lr=lr)
    losses = []
    for _ in range(steps):
        zs, xs = _random_windows(z, images, batch, tokens, codec.downsampling)
        z_q = codec.vector_quantizer.embed(codec.vector_quantizer.indices(zs))
        x_hat = 2 * codec.decode_codewords(z_q) - 1
        x = 2 * xs - 1
        loss = (x - x_hat).abs().mean() + torch.mean((zs - z_q) ** 2)
        if lpips is not None:
            loss = loss + lpips(x, x_hat).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    codec.requires_grad_(True)
    return losses


def finetune_quantizer(codec: VQGAN, images: torch.Tensor, steps: int, lr: float = 1e-4, batch: int = 4,
                       crop: int = 128, lpips=None) -> list[float]:
    """Mao et al.'s ``VQ_Frozen`` fine-tuning for ``steps`` batches of random ``crop`` crops;
    returns the reconstruction loss of every batch."""
    import pytorch_lightning as pl

    from .run import quiet_third_parties
    from .vqgan import VQGANModule

    quiet_third_parties()
    module = VQGANModule(codec, lr=lr, disc_start=0, disc_ndf=32, trainable="quantizer")
    module.lpips = lpips
    n, _, h, w = images.shape

    def crops():
        for _ in range(steps):
            pick, top, left = torch.randint(0, n, (batch,)), torch.randint(0, h - crop + 1, (1,)), torch.randint(0, w - crop + 1, (1,))
            yield images[pick, :, top : top + crop, left : left + crop]

    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            losses.append(float(trainer.callback_metrics["train/rec"]))

    trainer = pl.Trainer(max_steps=2 * steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    trainer.fit(module, torch.utils.data.DataLoader(list(crops()), batch_size=None))
    codec.eval()
    return losses


def train_prior(codec: VQGAN, grids: torch.Tensor, steps: int, lr: float = 1e-3, batch: int = 16) -> list[float]:
    """Train the masked-token transformer on index grids ``[N, h, w]`` (random flips); returns
    the loss (nats per index) every step."""
    prior = codec.prior.train()
    optimizer = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(steps, 1), pct_start=0.1)
    losses = []
    for _ in range(steps):
        sample = grids[torch.randint(0, len(grids), (batch,))]
        if torch.rand(()) < 0.5:
            sample = sample.flip(2)
        loss = prior.loss(sample)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    prior.eval()
    return losses


def _entropy_bits(counts: torch.Tensor) -> float:
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def build_ladder(base: VQGAN, sizes: list[int], data: str | Path, out: str | Path, *, crop=(320, 480),
                 limit: int | None = None, finetune_steps: int = 150, prior_steps: int = 400, prior_batch: int = 16,
                 index_model: str = "transformer", lpips=None, seed: int = 0, kmeans: str = "plain",
                 finetune: str = "mao", log=print) -> list[dict]:
    """Write ``vqgan_K{K'}.safetensors`` for every size into ``out``; returns the rung records."""
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = base.eval()
    images = training_images(data, crop, limit)
    start = time.time()
    z = encode_all(base, images)
    log(f"encoded {len(images)} training crops {tuple(images.shape[-2:])} in {time.time() - start:.1f} s")
    with torch.no_grad():
        base_usage = torch.bincount(base.vector_quantizer.indices(z).reshape(-1), minlength=base.n_embed)
    records = []
    for size in sizes:
        start = time.time()
        if size == base.n_embed:
            codec = reduced_codec(base, base.vector_quantizer.embedding.weight.detach().clone(), index_model)
            finetune_losses = []
        else:
            centres = kmeans_codebook(base.vector_quantizer.embedding.weight.detach(), base_usage, size, seed, kmeans)
            codec = reduced_codec(base, centres, index_model)
            if finetune == "mao":
                finetune_losses = finetune_quantizer(codec, images, finetune_steps, lpips=lpips)
            else:
                finetune_losses = finetune_codebook(codec, z, images, finetune_steps, lpips=lpips)
        # VQ_Frozen fine-tuning moves quant_conv: the rung's own latents, not the base model's.
        rung_z = encode_all(codec, images) if finetune == "mao" and finetune_losses else z
        with torch.no_grad():
            grids = codec.vector_quantizer.indices(rung_z)
        codec.static_model.fit(grids)
        prior_losses = train_prior(codec, grids, prior_steps, batch=prior_batch)
        path = out / f"vqgan_K{size}.safetensors"
        export_model(codec.eval(), path)
        usage = torch.bincount(grids.reshape(-1), minlength=size)
        record = {
            "K": size, "model": path.name, "uniform_bits": math.log2(size),
            "static_entropy_bits": _entropy_bits(usage), "codewords_used": int((usage > 0).sum()),
            "finetune_loss_first": finetune_losses[0] if finetune_losses else None,
            "finetune_loss_last": float(np.mean(finetune_losses[-10:])) if finetune_losses else None,
            "prior_loss_first_nats": prior_losses[0] if prior_losses else None,
            "prior_loss_last_nats": float(np.mean(prior_losses[-20:])) if prior_losses else None,
            "seconds": time.time() - start,
        }
        records.append(record)
        log(json.dumps(record))
    (out / "ladder.json").write_text(json.dumps(records, indent=1) + "\n")
    return records


FINETUNES = ("mao", "codebook")


def run_ladder(cfg) -> list[dict]:
    """``ladder.py``'s work from its config (``configs/ladder.yaml``); choices are checked first."""
    for key, choices in (("index_model", INDEX_MODEL_IDS), ("finetune", FINETUNES), ("kmeans", KMEANS)):
        if cfg[key] not in choices:
            raise CodecLabError(f"{key}={cfg[key]} is not one of {', '.join(choices)}")
    lpips = None
    if cfg.lpips_vgg and cfg.lpips_lin:
        from .losses import LPIPS

        lpips = LPIPS(cfg.lpips_vgg, cfg.lpips_lin)
    return build_ladder(load_vqgan(cfg.model), list(cfg.sizes), cfg.images, cfg.output_dir, crop=tuple(cfg.crop),
                        limit=cfg.limit, finetune_steps=cfg.finetune_steps, prior_steps=cfg.prior_steps,
                        prior_batch=cfg.prior_batch, index_model=cfg.index_model, lpips=lpips, seed=cfg.seed,
                        kmeans=cfg.kmeans, finetune=cfg.finetune)
