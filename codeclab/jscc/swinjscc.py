"""SwinJSCC: deep joint source-channel coding with Swin transformers, SNR- and rate-adaptive.

Yang, Wang, Dai, Qin, Niu, Zhang, "SwinJSCC: Taming Swin Transformer for Deep Joint
Source-Channel Coding", IEEE TCCN 2024; wiring and constants as the official code
(semcomm/SwinJSCC ``net/encoder.py``, ``net/decoder.py``, ``net/network.py``), pinned in
``tests/jscc/test_swinjscc.py``. The channel is :mod:`codeclab.channels`.

Encoder (``x`` in [0, 1], ``[B, 3, H, W]``)::

    PatchEmbed: conv 2x2 / 2, 3 -> E0 (no norm)
    stage 0: depths[0] Swin V1 blocks at E0 (windows alternately plain and shifted)
    stage i: PatchMerging (2x2 neighbours, LayerNorm(4 E_{i-1}), Linear -> E_i, no bias), depths[i] blocks
    LayerNorm(E_last)
    SA:  Channel ModNet(SNR in dB)  -- gates the E_last features
    RA:  Rate ModNet(C)             -- gates them; the C channels with the largest summed gate
                                       (per image) are sent, the others masked to zero
    no RA: Linear(E_last -> C)      -- the C channel values per token

The ``L C`` real values (``L = H W / 256`` tokens) become ``L C / 2`` complex symbols (CBR =
C / 1536 for every image size). The decoder mirrors it: (no RA: Linear(C -> E_last)); SA:
Channel ModNet(SNR); per stage its blocks then PatchReverseMerging (LayerNorm, Linear to 4x the
next width, no bias, pixel shuffle 2), the last to 3 channels; no output activation (the loss
and the metrics clamp to [0, 1]).

A ModNet (both kinds) on features ``x`` of width D with side information ``s`` (a scalar per
batch): ``t = Linear_0(detach(x)) * m_0(s)``, then 6 times ``t = Linear_k(t) * m_k(s)`` (width
M = 1.5 D), ``x * sigmoid(Linear_7(t))``; each ``m_k`` is Linear(1, M), ReLU, Linear(M, M), ReLU,
Linear(M, M), sigmoid. ``s`` is the raw SNR in dB or the raw channel count C.

Training as the official ``main.py``: MSE on the 0-255 scale against the clamped output, Adam
1e-4, one SNR and one C drawn per batch from the training lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..channels import CHANNELS, channel_bandwidth_ratio
from ..registry import Registry
from ..transforms.swin import SwinV1Block

JSCC_MODELS = Registry("JSCC model")
PATCH_SIZE = 2
MODNET_LAYERS = 7
MODNET_WIDTH_FACTOR = 1.5
INIT_STD = 0.02


class AdaptiveModulator(nn.Sequential):
    """A scalar side input to a gate in (0, 1)^M: Linear(1, M), ReLU, Linear(M, M), ReLU, Linear(M, M), sigmoid."""

    def __init__(self, width: int):
        super().__init__(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.Sigmoid())


class ModNet(nn.Module):
    """SwinJSCC's Channel ModNet / Rate ModNet: features ``[B, L, D]`` gated by a side scalar."""

    def __init__(self, dim: int):
        super().__init__()
        width = int(MODNET_WIDTH_FACTOR * dim)
        self.linears = nn.ModuleList([nn.Linear(dim, width)] + [nn.Linear(width, width) for _ in range(MODNET_LAYERS - 1)]
                                     + [nn.Linear(width, dim)])
        self.modulators = nn.ModuleList(AdaptiveModulator(width) for _ in range(MODNET_LAYERS))

    def gate(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """The ``[B, L, D]`` gate; ``side`` is ``[B, 1]``."""
        t = x.detach()
        for linear, modulator in zip(self.linears[:-1], self.modulators):
            t = linear(t) * modulator(side)[:, None, :]
        return torch.sigmoid(self.linears[-1](t))

    def forward(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x, side)


class PatchMerging(nn.Module):
    """``[B, H, W, C] -> [B, H/2, W/2, out]``: 2x2 neighbours concatenated (Swin's order), LayerNorm, Linear."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchReverseMerging(nn.Module):
    """``[B, H, W, C] -> [B, 2H, 2W, out]``: LayerNorm, Linear to ``4 out`` (no bias), pixel shuffle 2."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.increment = nn.Linear(dim, 4 * out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.increment(self.norm(x)).permute(0, 3, 1, 2)
        return F.pixel_shuffle(x, 2).permute(0, 2, 3, 1)


def _blocks(dim: int, depth: int, heads: int, window: int) -> nn.Sequential:
    return nn.Sequential(*[SwinV1Block(dim, heads, window, shift=bool(i % 2)) for i in range(depth)])


def _init_linear_and_norm(module: nn.Module) -> None:
    """The official initialisation of the backbone: truncated-normal (std 0.02) linear weights,
    zero biases, LayerNorm 1 and 0 (the ModNets, built after it, keep PyTorch's defaults)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=INIT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


@JSCC_MODELS.register("swinjscc")
class SwinJSCC(nn.Module):
    """The SwinJSCC encoder, channel and decoder.

    Args:
        embed_dims, depths, heads: per encoder stage (the decoder mirrors them); official base:
            (128, 192, 256, 320), (2, 2, 6, 2), (4, 6, 8, 10).
        window: Swin window (8).
        channel: ``"awgn"`` or ``"rayleigh"``.
        snr_adaptive: the Channel ModNets (SA).
        rate_adaptive: the Rate ModNet and top-C channel selection (RA); without it the model
            sends ``channels[0]`` values per token through a linear head.
        snrs, channels: training lists (one SNR in dB and one channel count C drawn per batch);
            official: 1, 4, 7, 10, 13 and 32, 64, 96, 128, 192.
    """

    def __init__(self, embed_dims: Sequence[int] = (128, 192, 256, 320), depths: Sequence[int] = (2, 2, 6, 2),
                 heads: Sequence[int] = (4, 6, 8, 10), window: int = 8, channel: str = "awgn",
                 snr_adaptive: bool = True, rate_adaptive: bool = True,
                 snrs: Sequence[float] = (1, 4, 7, 10, 13), channels: Sequence[int] = (32, 64, 96, 128, 192)):
        super().__init__()
        if not len(embed_dims) == len(depths) == len(heads):
            raise ValueError("embed_dims, depths and heads need one entry per stage")
        last = embed_dims[-1]
        if rate_adaptive and max(channels) > last:
            raise ValueError(f"the rate-adaptive model selects at most {last} channels (embed_dims[-1]); got {max(channels)}")
        if not rate_adaptive and len(channels) != 1:
            raise ValueError("a model without rate adaptation sends one channel count")
        self.config = {"embed_dims": list(embed_dims), "depths": list(depths), "heads": list(heads), "window": window,
                       "channel": channel, "snr_adaptive": snr_adaptive, "rate_adaptive": rate_adaptive,
                       "snrs": [float(s) for s in snrs], "channels": [int(c) for c in channels]}
        self.snrs, self.channels = tuple(float(s) for s in snrs), tuple(int(c) for c in channels)
        self.snr_adaptive, self.rate_adaptive = snr_adaptive, rate_adaptive
        self.downsampling = PATCH_SIZE * 2 ** (len(embed_dims) - 1)
        # Encoder
        self.patch_embed = nn.Conv2d(3, embed_dims[0], PATCH_SIZE, stride=PATCH_SIZE)
        self.encoder_stages = nn.ModuleList()
        for i, (dim, depth, head) in enumerate(zip(embed_dims, depths, heads)):
            merge = [PatchMerging(embed_dims[i - 1], dim)] if i else []
            self.encoder_stages.append(nn.Sequential(*merge, _blocks(dim, depth, head, window)))
        self.encoder_norm = nn.LayerNorm(last)
        self.encoder_head = None if rate_adaptive else nn.Linear(last, self.channels[0])
        # Decoder
        self.decoder_head = None if rate_adaptive else nn.Linear(self.channels[0], last)
        dims = list(reversed(embed_dims))
        self.decoder_stages = nn.ModuleList(
            nn.Sequential(_blocks(dim, depth, head, window), PatchReverseMerging(dim, dims[i + 1] if i + 1 < len(dims) else 3))
            for i, (dim, depth, head) in enumerate(zip(dims, reversed(depths), reversed(heads))))
        _init_linear_and_norm(self)
        self.encoder_snr_modnet = ModNet(last) if snr_adaptive else None
        self.encoder_rate_modnet = ModNet(last) if rate_adaptive else None
        self.decoder_snr_modnet = ModNet(last) if snr_adaptive else None
        self.channel = CHANNELS.build(channel)

    def _side(self, value: float, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1), float(value), device=x.device, dtype=x.dtype)

    def encode(self, image: torch.Tensor, snr_db: float, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, 3, H, W]`` -> the channel input ``[B, h, w, C or E_last]`` and the mask of the
        channels sent (``[B, 1, 1, E_last]``; None without rate adaptation)."""
        h, w = image.shape[-2:]
        if h % self.downsampling or w % self.downsampling:
            raise ValueError(f"image sides must be multiples of {self.downsampling}; got {w}x{h}")
        x = self.patch_embed(image).permute(0, 2, 3, 1)
        for stage in self.encoder_stages:
            x = stage(x)
        x = self.encoder_norm(x)
        b, th, tw, d = x.shape
        tokens = x.reshape(b, th * tw, d)
        if self.snr_adaptive:
            tokens = self.encoder_snr_modnet(tokens, self._side(snr_db, tokens))
        if not self.rate_adaptive:
            return self.encoder_head(tokens).reshape(b, th, tw, -1), None
        gate = self.encoder_rate_modnet.gate(tokens, self._side(channels, tokens))
        tokens = tokens * gate
        importance = gate.sum(dim=1)  # [B, D]: the channels' summed gates
        chosen = importance.argsort(dim=1, descending=True)[:, :channels]
        mask = torch.zeros_like(importance).scatter_(1, chosen, 1.0)[:, None, None, :]
        return tokens.reshape(b, th, tw, d) * mask, mask

    def decode(self, received: torch.Tensor, snr_db: float) -> torch.Tensor:
        """The channel output ``[B, h, w, C or E_last]`` -> the image ``[B, 3, H, W]`` (not clamped)."""
        b, th, tw, _ = received.shape
        x = received if self.rate_adaptive else self.decoder_head(received)
        if self.snr_adaptive:
            tokens = x.reshape(b, th * tw, -1)
            x = self.decoder_snr_modnet(tokens, self._side(snr_db, tokens)).reshape(b, th, tw, -1)
        for stage in self.decoder_stages:
            x = stage(x)
        return x.permute(0, 3, 1, 2)

    def forward(self, image: torch.Tensor, snr_db: float, channels: int | None = None) -> tuple[torch.Tensor, float]:
        """Encode, send through the channel at ``snr_db``, decode: ``(reconstruction, CBR)``."""
        channels = self.channels[0] if channels is None else int(channels)
        if self.rate_adaptive and not 0 < channels <= self.encoder_norm.normalized_shape[0]:
            raise ValueError(f"channels must be in 1..{self.encoder_norm.normalized_shape[0]}, got {channels}")
        sent, mask = self.encode(image, snr_db, channels)
        received = self.channel(sent, snr_db, mask)
        values_per_image = sent[0].numel() if mask is None else sent[0, ..., :1].numel() * channels
        return self.decode(received, snr_db), channel_bandwidth_ratio(values_per_image, *image.shape[-2:])
