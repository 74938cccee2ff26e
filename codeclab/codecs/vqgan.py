"""VQGAN codec for extreme low bitrates (Mao et al., "Extreme Image Compression using Fine-tuned
VQGANs", DCC 2024; VQGAN: Esser et al., CVPR 2021).

Pipeline (``f = 2 ** (len(ch_mult) - 1)``, 16 for the published models)::

    x [1, 3, H, W] in [0, 1] -> encoder(2x - 1) -> quant_conv -> z [1, D, H/f, W/f]
    -> nearest codeword indices i [H/f, W/f] in [0, K)   (the only thing transmitted)
    -> E[i] -> post_quant_conv -> decoder -> (y + 1) / 2 = x_hat

Rate: ``log2(K) / f^2`` bpp under the uniform index model (0.055 bpp at K = 16384, f = 16);
the ``static`` and ``transformer`` index models of :mod:`~codeclab.entropy_models.index_models`
code the same indices in fewer bits. Stream: one byte naming the index model (0 uniform,
1 static, 2 transformer), then the coder's stream, so a file decodes whatever model encoded it.

Exact vs approximate: the indices round-trip exactly (integer frequency rows; the transformer
prior is exact on the same machine and build, see the index-model docs); the reconstruction is
a deterministic function of the indices. Quality is whatever the VQGAN learned.

Parameter names follow taming-transformers' ``VQModel`` (``encoder.*``, ``decoder.*``,
``quant_conv``, ``post_quant_conv``, ``quantize.embedding.weight``); :func:`load_taming_state_dict`
loads a taming checkpoint (``VQGAN()``'s defaults are ``vqgan_imagenet_f16_16384``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..entropy_models.index_models import (
    INDEX_MODELS, MaskedIndexTransformer, StaticIndexModel, decode_indices, encode_indices,
)
from ..entropy_models.vector_quantizer import VectorQuantizer
from ..transforms.vqgan import Decoder, Encoder
from .base import Codec
from .registry import register_codec

# Prefixes of the state_dict entries a taming VQModel checkpoint shares with this codec.
TAMING_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.embedding.")


@register_codec
class VQGAN(Codec):
    """VQGAN image codec coding codebook indices with a selectable index model.

    Args:
      ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, dropout,
        norm_groups: the taming ``ddconfig`` of :class:`~codeclab.transforms.vqgan.Encoder`
        and :class:`~codeclab.transforms.vqgan.Decoder`.
      n_embed: codebook size ``K``; embed_dim: codeword dimension ``D``; beta: commitment weight.
      index_model: default index model for coding (``uniform``, ``static``, ``transformer``).
      prior_dim, prior_depth, prior_heads, prior_groups: the :class:`MaskedIndexTransformer`.

    Defaults are taming's ``vqgan_imagenet_f16_16384`` (ch 128, ch_mult 1,1,2,2,4, two res
    blocks, attention at 16, z 256, D 256, K 16384).
    """

    codec_id = "vqgan"
    downsampling = 16
    num_streams = 1

    def __init__(self, ch: int = 128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks: int = 2, attn_resolutions=(16,),
                 resolution: int = 256, z_channels: int = 256, embed_dim: int = 256, n_embed: int = 16384,
                 beta: float = 0.25, dropout: float = 0.0, norm_groups: int = 32, index_model: str = "transformer",
                 prior_dim: int = 256, prior_depth: int = 4, prior_heads: int = 8, prior_groups: int = 8):
        super().__init__()
        if index_model not in INDEX_MODELS:
            raise ValueError(f"index_model must be one of {', '.join(INDEX_MODELS)}, got {index_model!r}")
        ch_mult, attn_resolutions = [int(m) for m in ch_mult], [int(r) for r in attn_resolutions]
        self.config = {
            "ch": int(ch), "ch_mult": ch_mult, "num_res_blocks": int(num_res_blocks), "attn_resolutions": attn_resolutions,
            "resolution": int(resolution), "z_channels": int(z_channels), "embed_dim": int(embed_dim),
            "n_embed": int(n_embed), "beta": float(beta), "dropout": float(dropout), "norm_groups": int(norm_groups),
            "index_model": index_model, "prior_dim": int(prior_dim), "prior_depth": int(prior_depth),
            "prior_heads": int(prior_heads), "prior_groups": int(prior_groups),
        }
        self.downsampling = 2 ** (len(ch_mult) - 1)
        self.index_model = index_model
        dd = dict(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                  dropout=dropout, resolution=resolution, z_channels=z_channels, norm_groups=norm_groups)
        self.encoder = Encoder(in_channels=3, **dd)
        self.decoder = Decoder(out_ch=3, **dd)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta)
        self.static_model = StaticIndexModel(n_embed)
        self.prior = MaskedIndexTransformer(n_embed, prior_dim, prior_depth, prior_heads, prior_groups)

    @property
    def n_embed(self) -> int:
        return self.quantize.n_embed

    def vq_modules(self) -> list[nn.Module]:
        """The VQGAN proper (what taming trains); the index models are fitted separately."""
        return [self.encoder, self.decoder, self.quant_conv, self.post_quant_conv, self.quantize]

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """``z`` ``[B, D, H/f, W/f]`` (before quantisation) of ``x`` in [0, 1]."""
        return self.quant_conv(self.encoder(2 * x - 1))

    def decode_codewords(self, z_q: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1] (not clamped) of codewords ``[B, D, h, w]``."""
        return (self.decoder(self.post_quant_conv(z_q)) + 1) / 2

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[B, 3, f h, f w]`` of indices ``[B, h, w]``."""
        return self.decode_codewords(self.quantize.embed(indices))

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """Codebook indices ``[B, H/f, W/f]`` of ``x`` ``[B, 3, H, W]`` in [0, 1]."""
        return self.quantize.indices(self.encode_latent(x))

    def forward(self, x):
        """``x_hat``, ``likelihoods`` (``indices``: ``[B, 1, h, w]``, probability of each index
        under the static table, a constant of the VQGAN weights), ``vq_loss`` and ``indices``."""
        z_q, vq_loss, indices = self.quantize(self.encode_latent(x))
        likelihood = self.static_model.probabilities().to(x.device)[indices][:, None]
        return {"x_hat": self.decode_codewords(z_q), "likelihoods": {"indices": likelihood},
                "vq_loss": vq_loss, "indices": indices}

    def compress_indices(self, indices: torch.Tensor, index_model: str | None = None) -> bytes:
        """The stream of one index grid ``[h, w]`` under ``index_model`` (default: the config's)."""
        kind = index_model or self.index_model
        if kind not in INDEX_MODELS:
            raise ValueError(f"unknown index model {kind!r}")
        encoder = self.coder.encoder()
        encode_indices(indices.cpu(), kind, encoder, self.n_embed, self.static_model, self.prior)
        return bytes([INDEX_MODELS.index(kind)]) + encoder.finish()

    def decompress_indices(self, stream: bytes, shape: tuple[int, int]) -> torch.Tensor:
        """The index grid ``[h, w]`` of a stream written by :meth:`compress_indices`."""
        if len(stream) < 1 or stream[0] >= len(INDEX_MODELS):
            raise ValueError("corrupt VQGAN stream: unknown index model byte")
        kind = INDEX_MODELS[stream[0]]
        decoder = self.coder.decoder(stream[1:])
        indices = decode_indices(decoder, shape, kind, self.n_embed, self.static_model, self.prior)
        if hasattr(decoder, "at_end") and not decoder.at_end():
            raise ValueError("corrupt VQGAN stream: data left after the last index")
        return indices

    def _compress(self, x):
        if x.shape[0] != 1:
            raise ValueError(f"the VQGAN codec codes one image per stream, got a batch of {x.shape[0]}")
        return [self.compress_indices(self.indices(x)[0])]

    def _decompress(self, strings, size):
        shape = (size[0] // self.downsampling, size[1] // self.downsampling)
        return self.decode_indices(self.decompress_indices(strings[0], shape)[None])


def load_taming_state_dict(codec: VQGAN, state: dict) -> dict:
    """Load the VQGAN tensors of a taming-transformers ``VQModel`` state_dict into ``codec``.

    ``state``: the checkpoint's ``state_dict`` (or the whole checkpoint dict holding it). Keys
    ``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*`` and
    ``quantize.embedding.weight`` load under the same names; ``loss.discriminator.*`` is
    returned (renamed to ``discriminator.*``) for :class:`~codeclab.training.vqgan.VQGANModule`;
    everything else (``loss.perceptual_loss.*``, LPIPS's VGG) is ignored. Raises ``KeyError``
    if a VQGAN tensor is missing and ``RuntimeError`` on a shape mismatch. The index models
    keep their current state (fit them on the new codebook afterwards).
    """
    state = state.get("state_dict", state)
    vq = {k: v for k, v in state.items() if k.startswith(TAMING_PREFIXES)}
    expected = {k for k in codec.state_dict() if k.startswith(TAMING_PREFIXES)}
    missing = sorted(expected - set(vq))
    if missing:
        raise KeyError(f"taming checkpoint lacks {len(missing)} VQGAN tensors, e.g. {missing[0]}")
    unexpected = sorted(set(vq) - expected)
    if unexpected:
        raise KeyError(f"taming checkpoint has {len(unexpected)} tensors this architecture lacks, e.g. {unexpected[0]}")
    codec.load_state_dict({**codec.state_dict(), **vq})
    prefix = "loss.discriminator."
    return {"discriminator." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
