"""The codec interface every CodecLab codec implements.

A codec is a ``torch.nn.Module`` with three entry points:

* ``forward(x)``: training pass; ``x`` is ``[B, 3, H, W]`` in [0, 1] with H and W multiples of
  :attr:`Codec.downsampling`. Returns ``{"x_hat": [B, 3, H, W], "likelihoods": {name: tensor}}``;
  the rate of a latent is ``-sum(log2(likelihood))`` bits.
* ``compress(x)``: real coding of the same input; returns :class:`CompressedImage`.
* ``decompress(compressed)``: the reconstruction ``[B, 3, H, W]`` (not clamped).

Entropy tables are built automatically: ``compress``/``decompress`` call :meth:`Codec.ensure_tables`,
which rebuilds the integer CDFs whenever the entropy-model parameters changed since they were
last built (so nobody ever meets compressai's "run update() first"). A model file stores the
tables with a fingerprint of the parameters they were built from (see :mod:`codeclab.model_file`).
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from dataclasses import dataclass

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel

from ..entropy_models import EntropyCoder, get_coder


@dataclass
class CompressedImage:
    """Coded streams of a batch, plus the padded input size ``(H, W)`` the decoder needs."""

    strings: list[bytes]
    size: tuple[int, int]


class Codec(CompressionModel):
    """Base class: compressai's ``CompressionModel`` (state_dict handling of entropy tables,
    ``aux_loss``) plus the CodecLab interface and table management.

    Subclasses set :attr:`codec_id` (the registry name written into model files and bitstreams),
    :attr:`downsampling`, :attr:`num_streams`, and store their constructor arguments in ``self.config``.
    """

    codec_id: str = ""
    downsampling: int = 64
    num_streams: int = 1

    def __init__(self):
        super().__init__()
        self.config: dict = {}
        self.coder: EntropyCoder = get_coder()
        self._tables_fingerprint: str | None = None
        # Set when loaded from a model file (see codeclab.model_file); written into bitstreams.
        self.weights_hash: str | None = None

    def set_coder(self, name: str | None) -> None:
        """Select the entropy coder by registry name (``None``: the default)."""
        self.coder = get_coder(name)

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dict: ...

    @abstractmethod
    def _compress(self, x: torch.Tensor) -> list[bytes]: ...

    @abstractmethod
    def _decompress(self, strings: list[bytes], size: tuple[int, int]) -> torch.Tensor: ...

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> CompressedImage:
        if x.shape[-2] % self.downsampling or x.shape[-1] % self.downsampling:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of {self.downsampling}")
        self.ensure_tables()
        return CompressedImage(self._compress(x), (int(x.shape[-2]), int(x.shape[-1])))

    @torch.no_grad()
    def decompress(self, compressed: CompressedImage) -> torch.Tensor:
        self.ensure_tables()
        return self._decompress(compressed.strings, compressed.size)

    def _entropy_models(self):
        return [m for m in self.modules() if isinstance(m, (EntropyBottleneck, GaussianConditional))]

    def tables_fingerprint(self) -> str:
        """SHA-256 of every parameter the integer CDF tables are computed from."""
        digest = hashlib.sha256()
        for module in self._entropy_models():
            if isinstance(module, EntropyBottleneck):
                sources = [p for _, p in sorted(module.named_parameters())]
            else:
                sources = [module.scale_table, torch.tensor([float(module.tail_mass)])]
            for tensor in sources:
                digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def update_tables(self) -> None:
        """Rebuild every entropy model's integer CDF tables from the current parameters."""
        self.update(force=True)
        self._tables_fingerprint = self.tables_fingerprint()

    def tables_are_current(self) -> bool:
        built = all(m._offset.numel() > 0 for m in self._entropy_models())
        return built and self._tables_fingerprint == self.tables_fingerprint()

    def ensure_tables(self) -> None:
        """Rebuild stale or missing tables (e.g. after a training step or a state_dict load)."""
        if not self.tables_are_current():
            self.update_tables()

    def mark_tables_current(self, fingerprint: str) -> None:
        """Declare loaded tables as built from parameters with this fingerprint."""
        self._tables_fingerprint = fingerprint
