"""VQGAN codec for extreme low bitrates (Mao et al., "Extreme Image Compression using Fine-tuned
VQGANs", DCC 2024; VQGAN: Esser et al., CVPR 2021).

Pipeline (``f = 2 ** (len(ch_mult) - 1)``, 16 for the published models)::

    x [1, 3, H, W] in [0, 1] -> encoder(2x - 1) -> quant_conv -> z [1, D, H/f, W/f]
    -> nearest codeword indices i [H/f, W/f] in [0, K)   (the only thing transmitted)
    -> E[i] -> post_quant_conv -> decoder -> (y + 1) / 2 = x_hat

Rate: ``log2(K) / f^2`` bpp under the uniform index model (0.055 bpp at K = 16384, f = 16);
the ``static`` and ``transformer`` index models of :mod:`~codeclab.entropy_models.index_models`
code the same indices in fewer bits. The codec is the ``vqgan`` transform pair
(:mod:`codeclab.transforms.vqgan`) around the ``vq`` entropy model
(:class:`~codeclab.entropy_models.vq.VQEntropyModel`), whose stream starts with one byte naming
the index model, so a file decodes whatever model encoded it.

Exact vs approximate: the indices round-trip exactly (integer frequency rows; the transformer
prior is exact on the same machine and build, see the index-model docs); the reconstruction is
a deterministic function of the indices. Quality is whatever the VQGAN learned.

Module names inside the transforms follow taming-transformers' ``VQModel``;
:func:`load_taming_state_dict` maps a taming checkpoint's ``encoder.*``, ``decoder.*``,
``quant_conv``, ``post_quant_conv`` and ``quantize.embedding.weight`` onto them (``vqgan()``'s
defaults are ``vqgan_imagenet_f16_16384``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..coding import EntropyCoder
from ..entropy_models.vq import VQEntropyModel
from ..transforms.vqgan import vqgan_transforms
from .base import Codec, register_codec, rename_prefixes

# taming VQModel prefix -> this codec's prefix.
TAMING_KEYS = {
    "encoder.": "g_a.encoder.",
    "quant_conv.": "g_a.quant_conv.",
    "post_quant_conv.": "g_s.post_quant_conv.",
    "decoder.": "g_s.decoder.",
    "quantize.embedding.": "entropy_model.vector_quantizer.embedding.",
}


class VQGAN(Codec):
    """The VQGAN codec: :class:`~.base.Codec` plus the shortcuts VQGAN training and the ladder use."""

    @property
    def vector_quantizer(self):
        return self.entropy_model.vector_quantizer

    @property
    def static_model(self):
        return self.entropy_model.index_models["static"]

    @property
    def prior(self):
        return self.entropy_model.index_models["transformer"]

    @property
    def encoder(self) -> nn.Module:
        return self.g_a.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.g_s.decoder

    @property
    def index_model(self) -> str:
        """The index model new streams are coded with."""
        return self.entropy_model.index_model

    @index_model.setter
    def index_model(self, name: str) -> None:
        self.entropy_model.index_model = name

    @property
    def n_embed(self) -> int:
        return self.vector_quantizer.n_embed

    def vq_modules(self) -> list[nn.Module]:
        """The VQGAN proper (what taming trains); the index models are fitted separately."""
        return [self.g_a, self.g_s, self.vector_quantizer]

    def quantizer_modules(self) -> list[nn.Module]:
        """What Mao et al.'s ``VQ_Frozen`` fine-tunes: ``quant_conv``, the codebook and
        ``post_quant_conv`` (encoder and decoder stay frozen)."""
        return [self.g_a.quant_conv, self.vector_quantizer, self.g_s.post_quant_conv]

    def encode_latent(self, x: Tensor) -> Tensor:
        """``z`` ``[B, D, H/f, W/f]`` (before quantisation) of ``x`` in [0, 1]."""
        return self.g_a(x)

    def decode_codewords(self, z_q: Tensor) -> Tensor:
        """Reconstruction in [0, 1] (not clamped) of codewords ``[B, D, h, w]``."""
        return self.g_s(z_q)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Reconstruction ``[B, 3, f h, f w]`` of indices ``[B, h, w]``."""
        return self.g_s(self.vector_quantizer.embed(indices))

    def indices(self, x: Tensor) -> Tensor:
        """Codebook indices ``[B, H/f, W/f]`` of ``x`` ``[B, 3, H, W]`` in [0, 1]."""
        return self.vector_quantizer.indices(self.g_a(x))

    def compress_indices(self, indices: Tensor, coder: EntropyCoder, index_model: str | None = None) -> bytes:
        """The stream of one index grid ``[h, w]`` under ``index_model`` (default: :attr:`index_model`)."""
        return self.entropy_model.compress_indices(indices, coder, index_model)

    def decompress_indices(self, stream: bytes, shape: tuple[int, int], coder: EntropyCoder) -> Tensor:
        """The index grid ``[h, w]`` of a stream written by :meth:`compress_indices`."""
        return self.entropy_model.decompress_indices(stream, shape, coder)


@register_codec("vqgan")
def vqgan(ch: int = 128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks: int = 2, attn_resolutions=(16,),
          resolution: int = 256, z_channels: int = 256, embed_dim: int = 256, n_embed: int = 16384,
          beta: float = 0.25, dropout: float = 0.0, norm_groups: int = 32, index_model: str = "transformer",
          prior_dim: int = 256, prior_depth: int = 4, prior_heads: int = 8, prior_groups: int = 8,
          beta_on: str = "codebook") -> VQGAN:
    """VQGAN image codec coding codebook indices with a selectable index model.

    Args:
      ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, dropout,
        norm_groups: the taming ``ddconfig`` of the encoder and decoder.
      n_embed: codebook size ``K``; embed_dim: codeword dimension ``D``; beta, beta_on: the VQ loss
        weight and the term it weights (``codebook``: taming's published models; ``commitment``: VQ-VAE).
      index_model: default index model for coding (``uniform``, ``static``, ``transformer``).
      prior_dim, prior_depth, prior_heads, prior_groups: the masked-token transformer prior.

    Defaults are taming's ``vqgan_imagenet_f16_16384`` (ch 128, ch_mult 1,1,2,2,4, two res
    blocks, attention at 16, z 256, D 256, K 16384).
    """
    pair = vqgan_transforms(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, embed_dim, dropout,
                            norm_groups)
    entropy_model = VQEntropyModel(n_embed, embed_dim, beta, index_model, prior_dim, prior_depth, prior_heads, prior_groups,
                                   beta_on)
    return VQGAN(pair.g_a, pair.g_s, entropy_model, pair.stride)


def load_taming_state_dict(codec: VQGAN, state: dict) -> dict:
    """Load the VQGAN tensors of a taming-transformers ``VQModel`` state_dict into ``codec``.

    ``state``: the checkpoint's ``state_dict`` (or the whole checkpoint dict holding it). Keys
    ``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*`` and
    ``quantize.embedding.weight`` load as :data:`TAMING_KEYS` maps them; ``loss.discriminator.*`` is
    returned (renamed to ``discriminator.*``) for :class:`~codeclab.training.vqgan.VQGANModule`;
    everything else (``loss.perceptual_loss.*``, LPIPS's VGG) is ignored. Raises ``KeyError``
    if a VQGAN tensor is missing and ``RuntimeError`` on a shape mismatch. The index models
    keep their current state (fit them on the new codebook afterwards).
    """
    state = state.get("state_dict", state)
    vq = {rename_prefixes(k, TAMING_KEYS): v for k, v in state.items() if k.startswith(tuple(TAMING_KEYS))}
    expected = {k for k in codec.state_dict() if k.startswith(tuple(TAMING_KEYS.values()))}
    missing = sorted(expected - set(vq))
    if missing:
        raise KeyError(f"taming checkpoint lacks {len(missing)} VQGAN tensors, e.g. {missing[0]}")
    unexpected = sorted(set(vq) - expected)
    if unexpected:
        raise KeyError(f"taming checkpoint has {len(unexpected)} tensors this architecture lacks, e.g. {unexpected[0]}")
    codec.load_state_dict({**codec.state_dict(), **vq})
    prefix = "loss.discriminator."
    return {"discriminator." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

