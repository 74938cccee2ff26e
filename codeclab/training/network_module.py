"""What the Lightning modules of networks that are not codecs share (post-filters, JSCC models).

Such a module trains ``self.network`` (a registered network with a ``config``), saves the
hyper-parameters ``network`` and ``network_config`` (plain types: a checkpoint loads with
``torch.load(weights_only=True)``) and writes a network file
(:mod:`codeclab.formats.network_file`) of its ``kind`` when ``train.py`` exports.
"""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from ..errors import CodecLabError
from ..formats.network_file import load_network, save_network


class NetworkModule(pl.LightningModule):
    """Base of the non-codec training modules: ``network``, its optimiser and its file kind."""

    kind = ""  # the network file kind: "postfilter" or "jscc"

    def __init__(self, network: nn.Module, optimizer: Callable | None = None, lr_scheduler: Callable | None = None,
                 **hparams):
        super().__init__()
        self.network = network
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-4))
        self.scheduler_factory = lr_scheduler
        self.save_hyperparameters({"network": network.registry_name, "network_config": dict(network.config), **hparams})

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.network.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    def init_from(self, path) -> None:
        """Start from the weights of a network file of this kind (``train.py init_weights=FILE``: a
        fine-tune or a run continued from a committed file); the network and its config must match."""
        source = load_network(path, self.kind)
        if source.registry_name != self.network.registry_name or dict(source.config) != dict(self.network.config):
            raise CodecLabError(f"{path} holds {source.registry_name!r} {dict(source.config)}, not the "
                                f"{self.network.registry_name!r} {dict(self.network.config)} this run trains")
        self.network.load_state_dict(source.state_dict())

    def export(self, path, weights_dtype: str = "float32") -> None:
        """The network file of the trained network."""
        save_network(self.network.cpu(), self.kind, path, weights_dtype)
