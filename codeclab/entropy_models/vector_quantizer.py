"""Vector quantisation with a learned codebook (van den Oord et al. 2017, "Neural Discrete
Representation Learning"; the VQGAN variant of Esser et al. 2021).

Given ``z``: ``[B, D, h, w]`` and a codebook ``E``: ``[K, D]`` (``embedding.weight``, taming's
name), every position is replaced by its nearest codeword::

    i(p) = argmin_k ||z(p) - E_k||^2,      z_q(p) = E_{i(p)}

Training loss (``codebook + beta * commitment``; taming's ``legacy=False`` form)::

    L_vq = mean((sg[z] - z_q)^2) + beta * mean((z - sg[z_q])^2)

and gradients reach the encoder by the straight-through estimator ``z + sg[z_q - z]``.
Coding is exact: the decoder only needs the integer indices ``i`` (``[B, h, w]``, int64).
"""

from __future__ import annotations

import torch
from torch import nn


class VectorQuantizer(nn.Module):
    """Nearest-codeword quantiser.

    Args:
      n_embed: codebook size ``K``.
      embed_dim: codeword dimension ``D``.
      beta: commitment weight (0.25 in VQ-VAE and VQGAN).
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta = int(n_embed), int(embed_dim), float(beta)
        self.embedding = nn.Embedding(self.n_embed, self.embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / self.n_embed, 1.0 / self.n_embed)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-codeword indices ``[B, h, w]`` (int64) of ``z``: ``[B, D, h, w]``."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)
        codebook = self.embedding.weight
        # ||z||^2 is the same for every k, so only -2 z.E + ||E||^2 decides the argmin.
        distances = codebook.pow(2).sum(1)[None] - 2 * flat @ codebook.t()
        return distances.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Codewords ``[B, D, h, w]`` of ``indices``: ``[B, h, w]``."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_q, loss, indices)``: straight-through ``z_q`` ``[B, D, h, w]``, scalar ``L_vq``, ``[B, h, w]``."""
        indices = self.indices(z.detach())
        z_q = self.embed(indices)
        loss = torch.mean((z.detach() - z_q) ** 2) + self.beta * torch.mean((z - z_q.detach()) ** 2)
        return z + (z_q - z).detach(), loss, indices
