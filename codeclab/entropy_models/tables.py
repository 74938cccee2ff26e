"""Integer CDF tables owned by an entropy model, and how they are built and loaded.

A :class:`TableEntropyModel` (the factorized density, the Gaussian conditional) keeps the
tables its coder needs as buffers, in compressai's layout (``_quantized_cdf`` ``[T, L]``,
``_cdf_length`` ``[T]``, ``_offset`` ``[T]``; see :class:`codeclab.coding.CdfTables`), so they
travel in the state_dict and the model file. They are computed by :meth:`update_tables` from the
float parameters once, at export; decoding never recomputes them. Loading a state_dict resizes
the table buffers to the stored shapes (their size depends on the trained parameters).

Exact: tables are computed with compressai 1.2.8's arithmetic (float32 pmf, the C++ integer
quantisation in :func:`codeclab.coding.pmf_to_quantized_cdf`), so a compressai model and the
same weights here produce identical tables.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..coding import CdfTables
from ..coding.native import pmf_to_quantized_cdf
from ..transforms.layers import LowerBound

# Probability precision of the tables (compressai's ``entropy_coder_precision``).
TABLE_PRECISION = 16


class TableEntropyModel(nn.Module):
    """Base of entropy models with integer CDF tables; ``likelihood_bound`` floors likelihoods."""

    # Buffers computed by update_tables (their sizes follow the trained parameters).
    TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")

    def __init__(self, likelihood_bound: float = 1e-9):
        super().__init__()
        self.likelihood_lower_bound = LowerBound(likelihood_bound)
        self.register_buffer("_offset", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_quantized_cdf", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_cdf_length", torch.zeros(0, dtype=torch.int32))

    def update_tables(self) -> None:
        raise NotImplementedError

    def tables_built(self) -> bool:
        return self._offset.numel() > 0

    def tables(self) -> CdfTables:
        """The tables as the coders take them."""
        return CdfTables(
            cdfs=np.ascontiguousarray(self._quantized_cdf.cpu().numpy(), dtype=np.int32),
            lengths=np.ascontiguousarray(self._cdf_length.reshape(-1).cpu().numpy(), dtype=np.int32),
            offsets=np.ascontiguousarray(self._offset.reshape(-1).cpu().numpy(), dtype=np.int32),
        )

    def fingerprint_sources(self) -> list[Tensor]:
        """The float tensors the tables are computed from (hashed into the model file)."""
        raise NotImplementedError

    @staticmethod
    def _pmf_to_cdf(pmf: Tensor, tail_mass: Tensor, pmf_length: Tensor, max_length: int) -> Tensor:
        """``[T, max_length + 2]`` int32: row ``t`` is the CDF of ``pmf[t, :len_t]`` then the tail mass."""
        cdf = torch.zeros((len(pmf_length), max_length + 2), dtype=torch.int32)
        for row, (probabilities, length) in enumerate(zip(pmf.detach().cpu(), pmf_length.tolist())):
            values = torch.cat((probabilities[:length], tail_mass[row].detach().cpu())).numpy()
            table = torch.from_numpy(pmf_to_quantized_cdf(values, TABLE_PRECISION))
            cdf[row, : table.numel()] = table
        return cdf.to(pmf.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Table sizes depend on the trained parameters: take the stored shapes.
        for name in self.TABLE_BUFFERS:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
