"""Vector quantisation with a learned codebook (van den Oord et al. 2017, "Neural Discrete
Representation Learning"; the VQGAN variant of Esser et al. 2021).

Given ``z``: ``[B, D, h, w]`` and a codebook ``E``: ``[K, D]`` (``embedding.weight``, taming's
name), every position is replaced by its nearest codeword::

    i(p) = argmin_k ||z(p) - E_k||^2,      z_q(p) = E_{i(p)}

Training loss, with ``beta_on="codebook"`` (default: taming's ``VectorQuantizer2`` as its default
flag has it, which trained the published VQGAN checkpoints and Mao et al.'s fine-tuning)::

    L_vq = mean((z - sg[z_q])^2) + beta * mean((sg[z] - z_q)^2)     commitment x 1, codebook x beta

``beta_on="commitment"`` is van den Oord et al.'s form (taming's flag set the other way):
``mean((sg[z] - z_q)^2) + beta * mean((z - sg[z_q])^2)``.

and gradients reach the encoder by the straight-through estimator ``z + sg[z_q - z]``.
Coding is exact: the decoder only needs the integer indices ``i`` (``[B, h, w]``, int64),
coded by an index model (:mod:`.index_models`); :class:`VQEntropyModel` puts the two together.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import ENTROPY_MODELS, LatentEntropyModel
from .index_models import INDEX_MODEL_IDS, INDEX_MODELS


BETA_TERMS = ("codebook", "commitment")


class VectorQuantizer(nn.Module):
    """Nearest-codeword quantiser.

    Args:
      n_embed: codebook size ``K``.
      embed_dim: codeword dimension ``D``.
      beta: the weight (0.25 in VQ-VAE and VQGAN) of the term ``beta_on`` names.
      beta_on: ``"codebook"`` (taming's published models) or ``"commitment"`` (VQ-VAE).
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, beta_on: str = "codebook"):
        super().__init__()
        if beta_on not in BETA_TERMS:
            raise ValueError(f"beta_on must be one of {', '.join(BETA_TERMS)}, got {beta_on!r}")
        self.n_embed, self.embed_dim, self.beta, self.beta_on = int(n_embed), int(embed_dim), float(beta), beta_on
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
        codebook, commitment = torch.mean((z.detach() - z_q) ** 2), torch.mean((z - z_q.detach()) ** 2)
        if self.beta_on == "codebook":
            loss = commitment + self.beta * codebook
        else:
            loss = codebook + self.beta * commitment
        return z + (z_q - z).detach(), loss, indices


@ENTROPY_MODELS.register("vq")
class VQEntropyModel(LatentEntropyModel):
    """Vector quantisation + an index model: the latent "entropy model" of the VQGAN codec.

    ``y`` ``[1, D, h, w]`` -> nearest codewords -> indices ``[h, w]`` coded by one of the
    :data:`~.index_models.INDEX_MODELS` (``index_models[name]``; ``index_model`` is the default).
    Stream: one byte naming the index model (:data:`~.index_models.INDEX_MODEL_IDS`), then the
    coder's stream, so a file decodes whatever index model encoded it.

    Args:
      n_embed, embed_dim, beta, beta_on: the :class:`VectorQuantizer`.
      index_model: default index model for coding (``uniform``, ``static``, ``transformer``).
      prior_dim, prior_depth, prior_heads, prior_groups: the :class:`~.index_models.MaskedIndexTransformer`.
    """

    num_streams = 1

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, index_model: str = "transformer",
                 prior_dim: int = 256, prior_depth: int = 4, prior_heads: int = 8, prior_groups: int = 8,
                 beta_on: str = "codebook"):
        super().__init__("ste")
        if index_model not in INDEX_MODELS:
            raise ValueError(f"index_model must be one of {', '.join(INDEX_MODEL_IDS)}, got {index_model!r}")
        self.index_model = index_model
        self.vector_quantizer = VectorQuantizer(n_embed, embed_dim, beta, beta_on)
        self.index_models = nn.ModuleDict({
            "uniform": INDEX_MODELS.build("uniform", n_embed),
            "static": INDEX_MODELS.build("static", n_embed),
            "transformer": INDEX_MODELS.build("transformer", n_embed, prior_dim, prior_depth, prior_heads, prior_groups),
        })

    @property
    def portable(self) -> bool:
        """The default index model's probabilities are integers except the transformer's (float logits)."""
        return self.index_model != "transformer"

    def forward(self, z, level=None):
        """``y_hat`` (straight-through codewords), ``likelihoods["indices"]`` (``[B, 1, h, w]``: the
        static table's probability of each index, a constant of the weights), ``vq_loss``, ``indices``."""
        self.check_level(level)
        z_q, vq_loss, indices = self.vector_quantizer(z)
        likelihood = self.index_models["static"].probabilities().to(z.device)[indices][:, None]
        return {"y_hat": z_q, "likelihoods": {"indices": likelihood}, "vq_loss": vq_loss, "indices": indices}

    def quantize(self, z, level=None):
        self.check_level(level)
        return self.vector_quantizer.embed(self.vector_quantizer.indices(z))

    def compress_indices(self, indices: Tensor, coder, index_model: str | None = None) -> bytes:
        """The stream of one index grid ``[h, w]`` under ``index_model`` (default: :attr:`index_model`)."""
        kind = index_model or self.index_model
        encoder = coder.encoder()
        self.index_models[kind].encode(indices.cpu(), encoder)
        return bytes([INDEX_MODEL_IDS.index(kind)]) + encoder.finish()

    def decompress_indices(self, stream: bytes, shape: tuple[int, int], coder) -> Tensor:
        """The index grid ``[h, w]`` of a stream written by :meth:`compress_indices`."""
        if len(stream) < 1 or stream[0] >= len(INDEX_MODEL_IDS):
            raise ValueError("corrupt VQ stream: unknown index model byte")
        decoder = coder.decoder(stream[1:])
        indices = self.index_models[INDEX_MODEL_IDS[stream[0]]].decode(decoder, shape)
        if not decoder.at_end():
            raise ValueError("corrupt VQ stream: data left after the last index")
        return indices

    def compress(self, z, coder, level=None):
        self.check_level(level)
        if z.shape[0] != 1:
            raise ValueError(f"the VQ entropy model codes one image per stream, got a batch of {z.shape[0]}")
        indices = self.vector_quantizer.indices(z)
        return [self.compress_indices(indices[0], coder)], self.vector_quantizer.embed(indices)

    def decompress(self, streams, shape, coder, level=None):
        self.check_level(level)
        return self.vector_quantizer.embed(self.decompress_indices(streams[0], tuple(shape), coder)[None])
