"""Training a probabilistic-circuit codec (``pc-lossless``) the way ProbabilisticCircuits.jl
trains HCLTs: learn the Chow-Liu structure once from a sample of training blocks, then mini-batch
EM (:meth:`codeclab.entropy_models.hclt.HCLT.em_step`) with a parameter inertia that rises
linearly, as its examples do (``mini_batch_em`` at inertia 0.2 -> 0.9, then 0.9 -> 0.95).

There is no gradient descent (Lightning's manual optimisation, no optimiser). The data are the
framework's random crops (``data.patch_size`` = the codec's block size), so an epoch is a number
of draws rather than a fixed set: the official final full-batch EM epochs have no counterpart
(README "Lossless coding with probabilistic circuits", deviations).
"""

from __future__ import annotations

import torch

from ..codecs import Codec
from ..entropy_models.hclt import PSEUDOCOUNT, STRUCTURE_BITS, bits_per_dimension, chow_liu_tree
from .codec_module import CodecModule

# ProbabilisticCircuits.jl's HCLT examples: mini_batch_em(param_inertia = 0.2, param_inertia_end = 0.9)
# for 100 epochs, then (0.9, 0.95) for 200 epochs.
INERTIA_SCHEDULE = ((0.2, 0.9), (0.9, 0.95))
FIRST_PHASE = 1 / 3  # of the steps (100 of 300 epochs)


class CircuitEMModule(CodecModule):
    """Fits a ``pc-lossless`` codec by EM.

    Args:
        codec: the codec whose HCLT is trained (its structure is learned at the first step).
        pseudocount: EM's pseudocount (ProbabilisticCircuits.jl: 0.1).
        structure_blocks: training blocks drawn to learn the Chow-Liu tree.
        structure_bits: the tree is learned on values truncated to this many top bits.
    """

    def __init__(self, codec: Codec, pseudocount: float = PSEUDOCOUNT, structure_blocks: int = 10000,
                 structure_bits: int = STRUCTURE_BITS):
        super().__init__(codec, pseudocount=pseudocount, structure_blocks=structure_blocks, structure_bits=structure_bits)
        self.automatic_optimization = False
        self.pseudocount, self.structure_blocks, self.structure_bits = pseudocount, structure_blocks, structure_bits

    @property
    def circuit(self):
        return self.codec.entropy_model.circuit

    def blocks(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` crops in [0, 1] -> ``[blocks, variables]`` pixel values."""
        return self.codec.entropy_model.patches(self.codec.g_a(batch))

    def inertia(self) -> float:
        total = max(1, self.trainer.max_steps)
        split = max(1, round(total * FIRST_PHASE))
        (start, middle), (_, end) = INERTIA_SCHEDULE
        step = self.global_step
        if step < split:
            return start + (middle - start) * step / split
        return middle + (end - middle) * (step - split) / max(1, total - split)

    def on_train_start(self) -> None:
        if self.global_step:  # resumed: the structure came with the checkpoint
            return
        sample, count = [], 0
        for batch in self.trainer.datamodule.train_dataloader():
            sample.append(self.blocks(batch.to(self.device)).cpu())
            count += len(sample[-1])
            if count >= self.structure_blocks:
                break
        values = torch.cat(sample)[: self.structure_blocks].long().numpy()
        self.circuit.set_structure(*chow_liu_tree(values, self.circuit.num_cats, self.structure_bits, self.pseudocount))

    def training_step(self, batch, batch_idx):
        inertia = self.inertia()
        log_likelihood = self.circuit.em_step(self.blocks(batch), inertia, self.pseudocount)
        self.log("train/bpd", bits_per_dimension(log_likelihood, self.circuit.num_vars), prog_bar=True)
        self.log("train/inertia", inertia)
        # Lightning counts optimiser steps (max_steps, checkpoints, resuming); EM has no optimiser,
        # so each update advances the manual-optimisation step counter itself.
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    def validation_step(self, batch, batch_idx):
        with torch.no_grad():
            bpd = bits_per_dimension(self.circuit.log_likelihood(self.blocks(batch)), self.circuit.num_vars)
        self.log("val/bpd", bpd, prog_bar=True, batch_size=batch.shape[0])
        self.log("val/loss", bpd, batch_size=batch.shape[0])
        if batch_idx == 0:  # compress rebuilds the integer tables the EM steps made stale
            self.log_real_bpp(batch)

    def configure_optimizers(self):
        return None

