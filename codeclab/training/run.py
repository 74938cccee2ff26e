"""The training entry point behind ``train.py``: build everything from the Hydra config and fit."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from ..formats.model_file import export_model, init_weights


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


def train(cfg: DictConfig) -> dict:
    """Fit ``cfg.codec`` on ``cfg.data``; returns the final logged metrics (floats)."""
    quiet_third_parties()
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    codec = hydra.utils.instantiate(cfg.codec)
    if cfg.get("init_weights"):
        missing = init_weights(codec, cfg.init_weights)
        print(f"weights from {cfg.init_weights}; newly initialised: {', '.join(missing) or 'none'}")
    module = hydra.utils.instantiate(cfg.module, codec=codec)
    loggers = _instantiate_group(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=_instantiate_group(cfg.get("callbacks")))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if cfg.export and trainer.is_global_zero:
        model_path = Path(cfg.paths.output_dir) / "model.safetensors"
        export_model(module.codec.cpu(), model_path, cfg.get("export_weights_dtype") or "float32")
        print(f"model written to {model_path}")
    return metrics
