"""What every CodecLab Lightning module shares: the codec it trains and the checkpoint contract.

A module holds its codec as ``self.codec`` (state-dict prefix ``codec.``) and saves the
hyper-parameters ``codec_id`` and ``codec_config`` (plain types only, so a checkpoint loads with
``torch.load(weights_only=True)``), which is all :func:`codeclab.formats.model_file.codec_from_checkpoint`
needs to rebuild the codec and ``codeclab export`` to write its model file. Validation codes one
crop for real (:meth:`CodecModule.log_real_bpp`): an estimated rate is only useful if real bytes follow it.
"""

from __future__ import annotations

import itertools

import pytorch_lightning as pl

from ..codecs import Codec
from ..coding import get_coder
from ..entropy_models.integer import calibrate_int8_inputs, uncalibrated_int8_layers
from ..formats.model_file import export_model, training_lmbda
from ..measures import bits_per_pixel


CALIBRATION_BATCHES = 4


class CodecModule(pl.LightningModule):
    """Base of the training modules: ``codec`` plus the module's own plain ``hparams``."""

    def __init__(self, codec: Codec, **hparams):
        super().__init__()
        self.codec = codec
        # A model file holding the part of ``codec`` this module keeps frozen, which the exported
        # file names instead of storing (format 9's base model); None: the file holds everything.
        self.base_model = None
        self.save_hyperparameters({"codec_id": codec.codec_id, "codec_config": dict(codec.config), **hparams})

    def forward(self, x, *args):
        return self.codec(x, *args)

    def calibration_pass(self, batch) -> None:
        """One forward pass of the training loss on ``batch`` (for :meth:`on_fit_start`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot calibrate 8-bit layers")

    def on_fit_start(self) -> None:
        """Codecs with 8-bit integer layers (``arithmetic=int8``) starting from wider or float
        weights first set the layers' input grids on a few training batches (:func:`calibrate_int8_inputs`);
        a resumed run keeps the grids of its checkpoint."""
        if not uncalibrated_int8_layers(self.codec):
            return
        if self.trainer.datamodule is None:
            raise ValueError("8-bit layers calibrate on the datamodule's training batches: fit with a datamodule, "
                             "or call calibrate_int8_inputs first")
        batches = itertools.islice(self.trainer.datamodule.train_dataloader(), CALIBRATION_BATCHES)

        def run():
            for batch in batches:
                self.calibration_pass(self.transfer_batch_to_device(batch, self.device, 0))

        was_training = self.training
        self.train()
        print(f"calibrated the inputs of {calibrate_int8_inputs(self.codec, run)} 8-bit layers")
        self.train(was_training)

    def log_real_bpp(self, batch, level: int | None = None, **log_options) -> None:
        """``val/real_bpp``: the file-size rate of the batch's first crop, coded with the default coder."""
        compressed = self.codec.compress(batch[:1], get_coder(), level)
        self.log("val/real_bpp", bits_per_pixel(sum(map(len, compressed.strings)), batch.shape[-2], batch.shape[-1]),
                 batch_size=1, **log_options)

    def export(self, path, weights_dtype: str = "float32") -> None:
        """The model file of the trained codec, with its training lambda (for ``--refine``)."""
        self.codec.training_lmbda = training_lmbda(self.hparams)
        export_model(self.codec.cpu(), path, weights_dtype, base_model=self.base_model)
