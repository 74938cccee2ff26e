"""Training STEM's spatiotemporal entropy model on a frozen image codec (rate only).

As the official code (tinyvision/IPCodec ``IP_model.py``: ``total_loss = rate_loss``, only the
``Pmod`` variables train, Adam, gradients clipped to norm 5): the loss is the estimated bits per
pixel of a P-frame (``y`` residual and ``z``) given its reference, which is the reference frame's
latent quantised as an I-frame. The image codec (transforms, I-frame entropy model and its rate
gains) stays frozen, so distortion cannot change and needs no term.

Variable-rate image codecs: every sample draws a rate level; the reference is quantised and the
P-frame coded at that level. Validation logs the P-frame bpp next to the I-frame bpp of the same
frames (``val/p_over_i``: the fraction of the all-intra rate a P-frame costs).

The exported file stores the spatiotemporal model and names the frozen image codec's model
file by hash (``image_model``: the file's base model, so ``models/`` holds one copy of the image
codec); an older video model that holds its own copy of the image codec is exported whole.

Long GOPs (``data.chain`` K > 1, a named deviation): the official code only ever shows a P-frame
an I-frame reference; a chain sample codes K consecutive P-frames, each from the previous one's
reconstruction, as intra period -1 does, and the loss is their mean rate. (What made long GOPs
lose their saving was the quantisation grid, fixed by ``residual_grid="reference"``; chains of 4
moved the shipped model's chain validation little: reports/training/stem.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..codecs.stem import VideoCodec
from ..formats.model_file import find_base_model, read_metadata
from .codec_module import CodecModule
from .rate_distortion import clip_main_gradients, estimated_bpp, validation_levels


def quantize_reference(codec: VideoCodec, y: torch.Tensor, mu: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
    """The I-frame ``y_hat = round(g (y - mu)) / g + mu`` of each sample at its level."""
    if level is None:
        return torch.round(y - mu) + mu
    gain = codec.entropy_model.gain_bank.gain(level)
    return torch.round(gain * (y - mu)) / gain + mu


def image_codec_file(path: Path) -> Path | None:
    """The model file holding the image codec of ``path``: ``path`` itself (an image codec), the
    base model of a video model that names one, or None (an older video model with its own copy)."""
    base = find_base_model(path)
    if base is not None:
        return base
    return None if read_metadata(path)["codec"] == "stem" else path


def chain_frames(batch: dict) -> torch.Tensor:
    """The P-frames of a batch as ``[B, K, M, h, w]`` (``K = 1`` for pairs)."""
    return batch["y"] if batch["y"].ndim == 5 else batch["y"][:, None]


class StemModule(CodecModule):
    """Trains ``codec.temporal_model`` (the rest of ``codec`` is frozen) on latent pairs.

    Args:
        codec: a :class:`~codeclab.codecs.stem.VideoCodec` whose image part is trained.
        optimizer: ``params -> Optimizer`` (a Hydra partial); ``lr_scheduler``: optional
            ``optimizer -> LRScheduler``, stepped every step; ``grad_clip``: max gradient norm.
        aux_lr: learning rate of the P-frame ``z`` density's quantiles.
        image_model: the model file of the frozen image codec (``data.image_model``), named by the
            exported file as its base model (:func:`image_codec_file`).
    """

    def __init__(self, codec: VideoCodec, optimizer: Callable | None = None, lr_scheduler: Callable | None = None,
                 grad_clip: float = 5.0, aux_lr: float = 1e-3, image_model: str | None = None):
        if not isinstance(codec, VideoCodec):
            raise ValueError(f"STEM training needs a video codec (codec=stem), got {codec.codec_id!r}")
        super().__init__(codec)
        shared = {id(p) for p in codec.entropy_model.parameters()}
        for name, parameter in codec.named_parameters():
            parameter.requires_grad_(name.startswith("temporal_model.") and id(parameter) not in shared)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-4))
        self.scheduler_factory, self.grad_clip, self.aux_lr = lr_scheduler, grad_clip, aux_lr
        self.base_model = image_codec_file(Path(image_model)) if image_model else None

    def calibration_pass(self, batch: dict) -> None:
        self.p_frame_bpp(batch, self._levels(batch["y"].shape[0]))

    def train(self, mode: bool = True):
        super().train(mode)
        # The frozen image codec always runs as when coding.
        for module in (self.codec.g_a, self.codec.g_s, self.codec.entropy_model):
            module.eval()
        return self

    def _levels(self, batch_size: int, level: int | None = None) -> torch.Tensor | None:
        levels = self.codec.rate_levels
        if not levels:
            return None
        if level is not None:
            return torch.full((batch_size,), level, device=self.device)
        return torch.randint(0, levels, (batch_size,), device=self.device)

    def frame_pixels(self, batch: dict) -> int:
        """Pixels of the frame crops the latent crops come from."""
        return self.codec.stride**2 * batch["y"].shape[-2] * batch["y"].shape[-1]

    def p_frame_bpp(self, batch: dict, level: torch.Tensor | None) -> torch.Tensor:
        """Estimated bpp per sample: of its P-frame, or the mean over its chain (``y`` ``[B, K, M,
        h, w]``), where the first frame references the I-frame and each later one the previous
        P-frame's reconstruction, as coding with a long intra period does. The reconstruction is
        detached: each frame learns to code from such references, not to make them."""
        reference = quantize_reference(self.codec, batch["y_ref"], batch["mu_ref"], level)
        frames = chain_frames(batch)
        bpps = []
        for k in range(frames.shape[1]):
            out = self.codec.temporal_model(frames[:, k], reference, level)
            bpps.append(estimated_bpp(out["likelihoods"], frames[:, k], self.frame_pixels(batch)))
            reference = out["y_hat"].detach()
        return torch.stack(bpps).mean(0)

    def training_step(self, batch, batch_idx):
        bpp = self.p_frame_bpp(batch, self._levels(batch["y"].shape[0])).mean()
        aux = self.codec.temporal_model.entropy_bottleneck.loss()
        self.log_dict({"train/bpp": bpp, "train/aux": aux}, prog_bar=True, on_step=True, on_epoch=False)
        return bpp + aux

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip_main_gradients(optimizer, self.grad_clip)

    def validation_step(self, batch, batch_idx):
        for suffix, level in validation_levels(self.codec).items():
            per_sample = self._levels(batch["y"].shape[0], level)
            p_bpp = self.p_frame_bpp(batch, per_sample).mean()
            chain = chain_frames(batch)
            frames = chain.flatten(0, 1)
            intra = self.codec.entropy_model(frames, None if per_sample is None else per_sample.repeat_interleave(chain.shape[1]))
            i_bpp = estimated_bpp(intra["likelihoods"], frames, self.frame_pixels(batch)).mean()
            self.log_dict({f"val/bpp{suffix}": p_bpp, f"val/intra_bpp{suffix}": i_bpp, f"val/p_over_i{suffix}": p_bpp / i_bpp},
                          prog_bar=not suffix, on_epoch=True, batch_size=batch["y"].shape[0])

    def on_train_end(self) -> None:
        # With the main learning rate at 1e-3 the P-frame z density moves faster than its
        # quantiles follow on the aux loss; settling them (data-free) keeps the z tables tight.
        with torch.enable_grad():
            self.codec.temporal_model.entropy_bottleneck.fit_quantiles()

    def configure_optimizers(self):
        named = [(n, p) for n, p in self.codec.temporal_model.named_parameters() if p.requires_grad]
        main = [p for n, p in named if not n.endswith(".quantiles")]
        aux = [p for n, p in named if n.endswith(".quantiles")]
        optimizer = self.optimizer_factory(main)
        optimizer.add_param_group({"params": aux, "lr": self.aux_lr})
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}
