"""McQuic's multi-level multi-codebook quantiser (Zhu et al., "Unified Multivariate Gaussian
Mixture for Efficient Neural Image Compression", CVPR 2022; official code xiaosu-zhu/McQuic,
``mcquic/modules/quantizer.py`` (``UMGMQuantizer``) and ``mcquic/modules/entropyCoder.py``).

The "entropy model" of the ``mcquic`` codec takes the ``/8`` latent ``y`` of the analysis
transform and returns its restoration ``y_hat`` (also ``/8``); between them, ``L`` levels of
vector quantisation. Level ``l`` (``l = 0`` finest) works at ``/2^(l+4)``::

    x_0 = y                                              [C, H/8,  W/8]
    z_l = stage_encoder_l(x_l)                           [C, H/2^(l+4), ...]   (a /2 residual stage)
    i_l = argmax_k logits_l(quantization_head_l(z_l))    [m, h_l, w_l]         (m codebooks of K_l words, C/m wide)
    q_l = deq(i_l)                                       the chosen codewords, concatenated over the m groups
    x_{l+1} = latent_head_l(z_l) - q_l                   the residual feeds the next level (none after the last)

    logits[m, k] = -||x_m - c_{m,k}||^2 / sqrt(K) * max(t_m, eps)         t: learnable temperature per codebook

Decoding restores from the coarsest level up (cascaded decoder with side heads)::

    r_{L} = None
    r_l   = restore_head_l(dequantization_head_l(q_l) + side_head_l(r_{l+1}))   (no side head at l = L - 1)
    y_hat = r_0                                          restore heads upsample x2: r_l is /2^(l+3)

Training replaces ``q_l`` by the hard Gumbel-softmax sample of the logits (temperature 1,
straight-through) dotted with the codebook, exactly as the official ``_multiCodebookQuantization``.

Entropy coding: no context. Each codebook has a static frequency table, tracked during training
by the official EMA of the normalised code counts (``ema_rule="normalized"``, the released commit
3dc1a82 and HEAD of xiaosu-zhu/McQuic, ``mcquic/modules/entropyCoder.py``: ``p = count / sum count``,
``f <- (1 - ema) p + ema f`` with ``ema = 0.9``, starting at ``1 / K``). ``ema_rule="counts"`` is
the pre-April-2022 rule CodecLab first implemented (raw counts, initial 1, a count above the
average replaces it at once, otherwise ``f <- 0.1 count + 0.9 f``); McQuic model files before
format 6 keep it. The float EMA is turned into integer
``counts`` (``max(round(f / sum f * 2^16), 1)``, the official 16-bit normalisation) after every
training step; the counts are buffers of the model, so they travel in its file. Coding order::

    stream l (one per level, l = 0 .. L-1):  codebook 0: i_l[0] row-major, codebook 1: i_l[1], ...

each symbol with its codebook's quantised CDF (compressai layout, 16 bits, from the counts; the
project's rANS table mode, so ``--coder compressai`` works too).

Exact: the indices round-trip bit for bit on any machine (integer tables from integer counts;
``portable``), and the fixed rate with uniform tables is ``sum_l m log2(K_l) / 4^(l+4)`` bpp
(0.1275 at m = 2, K = 8192, 2048, 512). The restoration ``y_hat`` is a float function of the
indices: identical on the machine configuration that encoded, as any float synthesis.

Dead-codeword reassignment (``reassign_rule``): ``"release"`` (default) as the released commit
3dc1a82: codewords whose normalised frequency is below ``1e-6`` are dead; when more than ``K/2``
are, a random ``K/2`` of them are kept dead and the rest spared; each dead codeword is overwritten
by a codeword drawn at random (``randperm``) among the ``K - dead`` most used ones, and a codeword
counts as changed when it moved by more than ``1e-6`` (squared). ``"head"``: HEAD's deterministic
copy of the most used codewords in order (changed: more than ``1e-4``), CodecLab's first rule
(the stored ``mcquic/modules/quantizer.py`` at commit 05a214a2d430984699ea835aeefc1d0c0f53e358 reads so;
3dc1a82's rule is as issue 29's audit of that commit describes it).

Deviations from the official code: the heads' blocks are McQuic's (:mod:`codeclab.transforms.mcquic`)
from the stored version of the repository (not compared block by block with commit 3dc1a82);
``eps`` of the temperature's lower bound is 1e-6; tables are 16-bit as the official ones but are
coded by the project's rANS; the permutation trick (``permutationRate``, 0 in the official
configs) is not implemented; DDP all-reduces of the counts are left to Lightning (one process
updates its own EMA).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..coding import CdfTables
from ..coding.native import pmf_to_quantized_cdf
from ..transforms.layers import LowerBound, conv3x3
from ..transforms.mcquic import AttentionBlock, ResidualBlock, ResidualBlockShuffle, ResidualBlockWithStride
from .base import ENTROPY_MODELS, LatentEntropyModel

TABLE_PRECISION = 16
EPS = 1e-6
EMA_RULES = ("normalized", "counts")
REASSIGN_RULES = ("release", "head")
# The official temperature of the straight-through Gumbel-softmax (``_sample(x, 1.0)``).
GUMBEL_TEMPERATURE = 1.0


def gumbel_softmax_hard(logits: Tensor, temperature: float = GUMBEL_TEMPERATURE) -> Tensor:
    """One-hot of ``argmax(logits + Gumbel noise)`` in the forward pass, the gradient of
    ``softmax((logits + g) / temperature)`` (straight-through), over the last dimension."""
    uniforms = torch.rand_like(logits).clamp_(EPS, 1 - EPS)
    soft = ((logits - torch.log(-torch.log(uniforms))) / temperature).softmax(-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft


class MultiCodebookQuantizer(nn.Module):
    """``m`` codebooks of ``K`` words of ``C/m`` channels: ``codebook`` ``[m, K, C/m]``.

    Initialised as the official code ("SmallInit"): normal with std ``sqrt(2 / (5 C/m))``;
    ``temperature`` ``[m, 1, 1, 1]`` starts at 1.
    """

    def __init__(self, channels: int, m: int, k: int):
        super().__init__()
        if channels % m:
            raise ValueError(f"channels ({channels}) must be a multiple of m ({m})")
        self.m, self.k, self.d = int(m), int(k), channels // m
        self.codebook = nn.Parameter(torch.randn(self.m, self.k, self.d) * math.sqrt(2 / (5 * self.d)))
        self.temperature = nn.Parameter(torch.ones(self.m, 1, 1, 1))
        self.bound = LowerBound(EPS)

    def distance(self, x: Tensor) -> Tensor:
        """Squared distances ``[n, m, h, w, K]`` of ``x`` ``[n, C, h, w]`` to every codeword."""
        n, _, h, w = x.shape
        x = x.reshape(n, self.m, self.d, h, w)
        x2 = (x**2).sum(2)[..., None]
        c2 = (self.codebook**2).sum(-1)[None, :, None, None, :]
        inner = torch.einsum("nmdhw,mkd->nmhwk", x, self.codebook)
        return x2 + c2 - 2 * inner

    def logits(self, x: Tensor) -> Tensor:
        """``-||x - c||^2 / sqrt(K) * max(t, eps)``: ``[n, m, h, w, K]``."""
        return -self.distance(x) / math.sqrt(self.k) * self.bound(self.temperature)

    def indices(self, x: Tensor) -> Tensor:
        """Nearest codewords ``[n, m, h, w]`` (int64)."""
        return self.distance(x).argmin(-1)

    def embed(self, indices: Tensor) -> Tensor:
        """Codewords ``[n, C, h, w]`` of ``indices`` ``[n, m, h, w]``."""
        n, _, h, w = indices.shape
        groups = torch.arange(self.m, device=indices.device)[None, :, None, None]
        return self.codebook[groups, indices].permute(0, 1, 4, 2, 3).reshape(n, self.m * self.d, h, w)

    def dequantize(self, sample: Tensor) -> Tensor:
        """``sample`` ``[n, m, h, w, K]`` (one-hot or soft) dotted with the codebooks: ``[n, C, h, w]``."""
        n, _, h, w, _ = sample.shape
        return torch.einsum("nmhwk,mkd->nmdhw", sample, self.codebook).reshape(n, self.m * self.d, h, w)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(q, indices, logits)``: the straight-through Gumbel sample's codewords ``[n, C, h, w]``,
        ``argmax(logits)`` ``[n, m, h, w]`` and the logits."""
        logits = self.logits(x)
        return self.dequantize(gumbel_softmax_hard(logits, GUMBEL_TEMPERATURE)), logits.argmax(-1), logits


class QuantizationLevel(nn.Module):
    """One level: the encoder side (stage encoder, quantisation head, latent head), the codebooks,
    and the decoder side (dequantisation head, side head, restore head); ``last`` levels have no
    latent head and no side head. Buffers: ``freq_ema`` float ``[m, K]`` and ``counts`` int32 ``[m, K]``."""

    def __init__(self, channels: int, m: int, k: int, last: bool):
        super().__init__()
        c = channels
        self.stage_encoder = nn.Sequential(ResidualBlockWithStride(c, c), ResidualBlock(c, c), AttentionBlock(c))
        self.quantization_head = nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), conv3x3(c, c))
        self.latent_head = None if last else nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), conv3x3(c, c))
        self.quantizer = MultiCodebookQuantizer(c, m, k)
        self.dequantization_head = nn.Sequential(AttentionBlock(c), conv3x3(c, c), ResidualBlock(c, c))
        self.side_head = None if last else nn.Sequential(AttentionBlock(c), conv3x3(c, c), ResidualBlock(c, c))
        self.restore_head = nn.Sequential(AttentionBlock(c), ResidualBlock(c, c), ResidualBlockShuffle(c, c))
        self.register_buffer("freq_ema", torch.ones(m, k))
        self.register_buffer("counts", torch.ones(m, k, dtype=torch.int32))

    def restore(self, q: Tensor, coarser: Tensor | None) -> Tensor:
        """``restore_head(dequantization_head(q) + side_head(coarser))``: twice the size of ``q``."""
        h = self.dequantization_head(q)
        if self.side_head is not None:
            h = h + self.side_head(coarser)
        return self.restore_head(h)


@ENTROPY_MODELS.register("mcquic")
class McQuicEntropyModel(LatentEntropyModel):
    """McQuic's quantiser (see the module docstring): ``y`` ``[B, C, h, w]`` -> ``y_hat`` of the same shape.

    Args:
      channels: ``C`` (the transforms' width; 128 in the paper).
      m: codebooks per level (the paper's default 2).
      k: codebook size per level, finest first (``[8192, 2048, 512]``); ``len(k)`` is ``L``.
      ema: the official EMA factor of the code frequencies (0.9).
      ema_rule: ``"normalized"`` (the official rule) or ``"counts"`` (the pre-April-2022 one).
      reassign_rule: ``"release"`` (commit 3dc1a82) or ``"head"`` (the repository's HEAD).
    """

    refinable = False

    def __init__(self, channels: int = 128, m: int = 2, k: Sequence[int] = (8192, 2048, 512), ema: float = 0.9,
                 ema_rule: str = "normalized", reassign_rule: str = "release"):
        super().__init__("ste")
        if ema_rule not in EMA_RULES:
            raise ValueError(f"ema_rule must be one of {', '.join(EMA_RULES)}, got {ema_rule!r}")
        if reassign_rule not in REASSIGN_RULES:
            raise ValueError(f"reassign_rule must be one of {', '.join(REASSIGN_RULES)}, got {reassign_rule!r}")
        self.ema_rule, self.reassign_rule = ema_rule, reassign_rule
        k = [int(v) for v in ([k] if isinstance(k, int) else k)]
        if not k:
            raise ValueError("k must name at least one codebook size")
        self.channels, self.m, self.k, self.ema = int(channels), int(m), k, float(ema)
        self.levels = nn.ModuleList(QuantizationLevel(self.channels, self.m, ki, i == len(k) - 1) for i, ki in enumerate(k))
        if ema_rule == "normalized":  # the official start: uniform probabilities
            for level in self.levels:
                level.freq_ema.fill_(1.0 / level.quantizer.k)
        self.num_streams = len(k)
        self.downsampling = 2 ** len(k)

    # Training ----------------------------------------------------------------------------

    @torch.no_grad()
    def update_frequencies(self, codes: list[Tensor]) -> None:
        """The EMA of the code counts (``codes``: per level ``[n, m, h, w]``; ``ema_rule``), then ``counts``."""
        for level, code in zip(self.levels, codes):
            total = F.one_hot(code.permute(1, 0, 2, 3).reshape(self.m, -1), level.quantizer.k).sum(1).to(level.freq_ema)
            if self.ema_rule == "normalized":
                normalized = total / total.sum(-1, keepdim=True)
                level.freq_ema.copy_((1 - self.ema) * normalized + self.ema * level.freq_ema)
            else:
                decay = 1 - self.ema
                averaged = decay * total + (1 - decay) * level.freq_ema
                level.freq_ema.copy_(torch.where(total > level.freq_ema, total, averaged))
            level.counts.copy_(self.counts_from(level.freq_ema))

    @staticmethod
    def counts_from(freq: Tensor) -> Tensor:
        """Integer counts ``[m, K]`` of an EMA: ``max(round(f / sum f * 2^16), 1)``."""
        total = freq.sum(-1, keepdim=True).clamp_min(EPS)
        return (freq / total * 2**TABLE_PRECISION).round().clamp_min(1).to(torch.int32)

    def normalized_frequencies(self) -> list[Tensor]:
        """``f / sum f`` ``[m, K]`` per level (what dead-codeword reassignment reads)."""
        return [level.freq_ema / level.freq_ema.sum(-1, keepdim=True) for level in self.levels]

    @torch.no_grad()
    def reassign_dead_codewords(self, generator: torch.Generator | None = None) -> float:
        """The official ``reAssignCodebook`` (``reassign_rule``, module docstring): codewords whose
        normalised frequency is below ``1e-6`` are overwritten by frequent ones (at most ``K/2`` per
        codebook, picked at random among the dead ones). Returns the fraction of codewords changed."""
        changed = []
        release = self.reassign_rule == "release"
        for level, freq in zip(self.levels, self.normalized_frequencies()):
            codebook = level.quantizer.codebook
            new = codebook.detach().clone()
            k = level.quantizer.k
            for g in range(self.m):
                f = freq[g].clone()
                dead = (f < EPS).nonzero().flatten()
                cap = k // 2
                if dead.numel() > cap:
                    perm = torch.randperm(dead.numel(), generator=generator).to(dead.device)
                    f[dead[perm[cap:]]] = 1.0  # spared: counted among the used ones (release)
                    dead = dead[perm[:cap]].sort().values
                if dead.numel() == 0:
                    continue
                order = torch.argsort(f if release else freq[g], descending=True, stable=True)
                if release:  # a random draw among the K - dead most used codewords
                    pool = order[: k - dead.numel()]
                    sources = pool[torch.randperm(pool.numel(), generator=generator)[: dead.numel()].to(pool.device)]
                else:  # HEAD: the most used codewords in order
                    sources = order[: dead.numel()]
                new[g, dead] = codebook[g, sources]
            moved = 1e-6 if release else 1e-4
            changed.append((((new - codebook) ** 2).sum(-1) > moved).flatten())
            codebook.copy_(new)
        return float(torch.cat(changed).float().mean())

    def codebook_cosine_penalty(self) -> Tensor:
        """Mean squared cosine similarity between distinct codewords of each codebook (an optional
        diversity regulariser; 0 for orthogonal codewords)."""
        terms = []
        for level in self.levels:
            unit = F.normalize(level.quantizer.codebook, dim=-1)
            gram = unit @ unit.transpose(1, 2)
            k = gram.shape[-1]
            off = gram - torch.eye(k, device=gram.device)
            terms.append((off**2).sum((1, 2)) / max(1, k * (k - 1)))
        return torch.cat(terms).mean()

    def forward(self, y: Tensor, level=None) -> dict:
        """``y_hat``, ``likelihoods`` (``level<l>``: ``[B, m, h_l, w_l]``, each index's probability
        under the current tables, a constant: the rate is fixed), ``codes`` and ``logits`` per level.
        Training mode samples by hard Gumbel-softmax and updates the frequency EMA."""
        self.check_level(level)
        x, quantized, codes, logits = y, [], [], []
        for lv in self.levels:
            z = lv.stage_encoder(x)
            if self.training:
                q, code, logit = lv.quantizer(lv.quantization_head(z))
            else:
                logit = lv.quantizer.logits(lv.quantization_head(z))
                code = logit.argmax(-1)
                q = lv.quantizer.embed(code)
            quantized.append(q), codes.append(code), logits.append(logit)
            if lv.latent_head is not None:
                x = lv.latent_head(z) - q
        if self.training:
            self.update_frequencies(codes)
        restored = None
        for lv, q in zip(reversed(self.levels), reversed(quantized)):
            restored = lv.restore(q, restored)
        likelihoods = {}
        for i, (lv, code) in enumerate(zip(self.levels, codes)):
            probs = lv.counts.double() / lv.counts.double().sum(-1, keepdim=True)
            groups = torch.arange(self.m, device=code.device)[None, :, None, None]
            likelihoods[f"level{i}"] = probs.float().to(code.device)[groups, code]
        return {"y_hat": restored, "likelihoods": likelihoods, "codes": codes, "logits": logits}

    # Coding ------------------------------------------------------------------------------

    def encode_indices(self, y: Tensor) -> list[Tensor]:
        """The indices ``[B, m, h_l, w_l]`` of every level (nearest codewords, as the official ``encode``)."""
        x, codes = y, []
        for lv in self.levels:
            z = lv.stage_encoder(x)
            code = lv.quantizer.indices(lv.quantization_head(z))
            codes.append(code)
            if lv.latent_head is not None:
                x = lv.latent_head(z) - lv.quantizer.embed(code)
        return codes

    def decode_indices(self, codes: list[Tensor]) -> Tensor:
        """``y_hat`` of the indices of every level (coarsest first through the cascaded decoder)."""
        restored = None
        for lv, code in zip(reversed(self.levels), reversed(codes)):
            restored = lv.restore(lv.quantizer.embed(code), restored)
        return restored

    def quantize(self, y, level=None):
        self.check_level(level)
        return self.decode_indices(self.encode_indices(y))

    def tables(self, index: int) -> CdfTables:
        """The quantised CDFs (compressai layout, one per codebook) of level ``index``, from its counts."""
        counts = self.levels[index].counts.detach().cpu().numpy().astype(np.float64)
        k = counts.shape[1]
        cdfs = np.zeros((self.m, k + 2), np.int32)
        for g in range(self.m):
            pmf = np.append(counts[g] / counts[g].sum(), 0.0)  # a zero tail (the escape), as compressai's layout needs
            cdfs[g] = pmf_to_quantized_cdf(pmf, TABLE_PRECISION)
        return CdfTables(cdfs, np.full(self.m, k + 2, np.int32), np.zeros(self.m, np.int32))

    def _group_indexes(self, shape: tuple[int, int]) -> np.ndarray:
        return np.repeat(np.arange(self.m, dtype=np.int32), shape[0] * shape[1])

    def compress(self, y, coder, level=None):
        self.check_level(level)
        if y.shape[0] != 1:
            raise ValueError(f"the McQuic entropy model codes one image per stream set, got a batch of {y.shape[0]}")
        codes = self.encode_indices(y)
        streams = []
        for i, code in enumerate(codes):
            encoder = coder.encoder()
            encoder.encode(code[0].reshape(-1).to(torch.int32).cpu().numpy(), self._group_indexes(code.shape[-2:]),
                           self.tables(i))
            streams.append(encoder.finish())
        return streams, self.decode_indices(codes)

    def decompress_indices(self, streams: list[bytes], shape: tuple[int, int], coder) -> list[Tensor]:
        """The indices of every level from the streams, for a ``y`` of ``shape``."""
        if len(streams) != len(self.levels):
            raise ValueError(f"McQuic needs {len(self.levels)} streams, got {len(streams)}")
        codes = []
        for i, stream in enumerate(streams):
            size = (shape[0] >> (i + 1), shape[1] >> (i + 1))
            decoder = coder.decoder(stream)
            symbols = decoder.decode(self._group_indexes(size), self.tables(i))
            if not decoder.at_end():
                raise ValueError(f"corrupt McQuic stream: data left after the last index of level {i}")
            code = torch.from_numpy(np.asarray(symbols, dtype=np.int64)).reshape(1, self.m, *size)
            if code.min() < 0 or code.max() >= self.k[i]:
                raise ValueError(f"corrupt McQuic stream: an index outside the codebook at level {i}")
            codes.append(code.to(self.levels[i].quantizer.codebook.device))
        return codes

    def decompress(self, streams, shape, coder, level=None):
        self.check_level(level)
        return self.decode_indices(self.decompress_indices(streams, tuple(shape), coder))
