"""The training entry point behind ``train.py``: build everything from the Hydra config and fit."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ..errors import CodecLabError
from ..formats.model_file import init_weights


def _instantiate_group(group: DictConfig | None) -> list:
    return [hydra.utils.instantiate(node) for node in (group or {}).values() if node is not None]


class _NoAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


# One instance, so that calling quiet_third_parties() again (a multirun) adds no second filter.
_NO_ADVERTISEMENTS = _NoAdvertisements()


def quiet_third_parties() -> None:
    """No advertisements (Lightning's "Tip" lines) and no deprecation notices about the
    libraries' own internals; warnings that concern the user's run stay."""
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        for handler_owner in (logging.getLogger(name), logging.getLogger(f"{name}.utilities.rank_zero")):
            handler_owner.addFilter(_NO_ADVERTISEMENTS)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*is deprecated.*")


class _FirstStep(pl.Callback):
    """The global step this fit began at (after a resumed checkpoint is restored); None: no
    training ran (no batches, or the run had already reached its end)."""

    step: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.step = trainer.global_step


def _zero_steps_reason(trainer: pl.Trainer) -> str:
    if trainer.num_training_batches == 0:
        return (f"the training data gives no full batch per process (world size {trainer.world_size}): "
                "lower data.batch_size or raise data.samples_per_epoch")
    return f"the run was already finished at step {trainer.global_step} (raise trainer.max_steps to continue)"


def _summary(steps: int, metrics: dict, checkpoint: str | None, model: Path | None) -> str:
    """What a finished training printed last: steps, the last validation, the files written."""
    lines = [f"trained {steps} steps"]
    if "val/bpp" in metrics:  # validation ran
        real = f" (real {metrics['val/real_bpp']:.4f})" if "val/real_bpp" in metrics else ""
        psnr = f", PSNR {metrics['val/psnr']:.2f} dB" if "val/psnr" in metrics else ""
        lines.append(f"last validation: {metrics['val/bpp']:.4f} bpp{real}{psnr}")
    lines.append(f"last checkpoint: {checkpoint or 'none'}")
    lines.append(f"model file: {model or 'none (export=false)'}")
    return "\n".join(lines)


def check_patch_size(patch_size: int, codec) -> None:
    """Training crops the transforms can take (checked before the first step, not in it)."""
    if patch_size < codec.downsampling or patch_size % codec.downsampling:
        raise CodecLabError(f"data.patch_size={patch_size} must be a positive multiple of {codec.codec_id}'s "
                            f"downsampling {codec.downsampling}")


def check_checkpoint(path: str) -> None:
    """A checkpoint Lightning can resume from, loaded without arbitrary pickles (``weights_only``)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise CodecLabError(f"ckpt_path {path} does not exist") from None
    except Exception as err:  # noqa: BLE001  (any unreadable file is the same one-line refusal)
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise CodecLabError(f"ckpt_path {path} is not a checkpoint this version loads safely: {first_line[:200]}") from None


def train(cfg: DictConfig) -> dict:
    """Fit ``cfg.codec`` on ``cfg.data``; returns the final logged metrics (floats). Training that
    runs no step is a :class:`CodecLabError` (an untrained model is never written)."""
    quiet_third_parties()
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    # A codec, or none where the module builds what it trains (post-filters, JSCC models).
    codec = hydra.utils.instantiate(cfg.codec) if cfg.get("codec") else None
    if cfg.get("init_weights") and codec is not None:
        missing = init_weights(codec, cfg.init_weights)
        print(f"weights from {cfg.init_weights}; newly initialised: {', '.join(missing) or 'none'}")
    if codec is not None and hasattr(datamodule, "patch_size"):  # image crops; STEM's latent pairs have none
        check_patch_size(datamodule.patch_size, codec)
    if cfg.ckpt_path:
        check_checkpoint(cfg.ckpt_path)
    module = hydra.utils.instantiate(cfg.module, **({} if codec is None else {"codec": codec}))
    if cfg.get("init_weights") and codec is None:
        if not hasattr(module, "init_from"):
            raise CodecLabError("init_weights needs a codec or a network to initialise (this run trains neither)")
        module.init_from(cfg.init_weights)
        print(f"weights from {cfg.init_weights}")
    loggers = _instantiate_group(cfg.get("logger"))
    first_step = _FirstStep()
    callbacks = [*_instantiate_group(cfg.get("callbacks")), first_step]
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    steps = 0 if first_step.step is None else trainer.global_step - first_step.step
    if steps == 0:
        raise CodecLabError(f"training ran 0 steps: {_zero_steps_reason(trainer)}; no model written")
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        model_path = Path(cfg.paths.output_dir) / "model.safetensors" if cfg.export else None
        if model_path:
            module.export(model_path, cfg.get("export_weights_dtype") or "float32")
        checkpoint = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else None
        print(_summary(steps, metrics, checkpoint, model_path))
    return metrics
