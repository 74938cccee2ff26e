"""WaLLoC: wavelet learned lossy compression (Jacobellis & Yadwadkar, "Learned Compression for
Compressed Learning", 2024).

Pipeline (``x``: ``[B, 3, H, W]`` in [0, 1], H and W multiples of ``2**J``)::

    packets = WPT_J(x - 1/2)             [B, 3 * 4**J, H / 2**J, W / 2**J]   invertible, linear
    y       = E(packets)                 [B, M, H / 2**J, W / 2**J]          1x1 conv (+ optional light MLP)
    y_hat   = Q(y)                       same shape                          the bottleneck
    x_hat   = WPT_J^-1(D(y_hat)) + 1/2                                       D: residual + attention stack

Dimension reduction ``3 * 4**J / M`` (J=3, M=12: 16x). The encoder is a wavelet packet
transform (:class:`~codeclab.transforms.wavelet.WaveletPacket2d`) and one linear projection, so
encoding costs a few multiply-adds per pixel; the decoder carries the network capacity.

Bottlenecks (``bottleneck=``):

* ``"bounded"`` (the paper's): ``q = Phi(y) * (2**b - 1)`` with ``Phi`` the standard normal CDF,
  plus ``U(-1/2, 1/2)`` noise in training and rounding to ``b``-bit integers at test time. The
  integers of the ``M`` channels are tiled into one grayscale mosaic and stored losslessly as PNG
  or WebP (``lossless_format``); the rate is the size of that image. Training needs a
  differentiable rate: a factorized density (compressai's ``EntropyBottleneck``) of the noisy
  integers gives ``-log2 p(q~)``, used in the loss only (its estimate and the PNG/WebP size are
  both reported by the benchmark).
* ``"factorized"``: Ballé et al. 2017 on ``y`` directly: noise in training, rounding around the
  channel medians at test time, coded with the learned density by the project's rANS coder.

Exact: the integers ``q`` (or symbols) round-trip bit for bit through either container, so the
decoder sees exactly the encoder's ``y_hat``; :meth:`WaLLoC.decode_latents` returns it without
running the decoder network ("compressed-domain" access). Approximate: everything after ``D``.
"""

from __future__ import annotations

import io
import math

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import AttentionBlock, ResidualBlock
from PIL import Image
from torch import nn

from ..entropy_models.latent_coding import decode_factorized, encode_factorized, quantize_factorized
from ..transforms.wavelet import WaveletPacket2d
from .base import Codec
from .registry import register_codec

BOTTLENECKS = ("bounded", "factorized")
LOSSLESS_FORMATS = {"png": {"format": "PNG", "compress_level": 6}, "webp": {"format": "WEBP", "lossless": True, "quality": 100, "method": 4}}


class _ResidualMLP(nn.Module):
    """``y + W2 GELU(W1 y)`` with 1x1 convolutions: the optional light nonlinear encoder stage."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, y):
        return y + self.net(y)


def _mosaic_grid(channels: int) -> tuple[int, int]:
    """(rows, columns) of the tile grid holding ``channels`` latent planes."""
    columns = math.ceil(math.sqrt(channels))
    return math.ceil(channels / columns), columns


def pack_latent_image(q: torch.Tensor, lossless_format: str = "png") -> bytes:
    """``[M, h, w]`` integers in [0, 255] -> lossless PNG/WebP bytes of a grayscale tile mosaic.

    Channel ``c`` is the tile at row ``c // columns``, column ``c % columns`` of a grid with
    ``columns = ceil(sqrt(M))``; unused tiles are zero.
    """
    channels, height, width = q.shape
    rows, columns = _mosaic_grid(channels)
    tiles = torch.zeros(rows * columns, height, width, dtype=torch.uint8)
    tiles[:channels] = q.to(torch.uint8)
    mosaic = tiles.reshape(rows, columns, height, width).permute(0, 2, 1, 3).reshape(rows * height, columns * width)
    buffer = io.BytesIO()
    Image.fromarray(mosaic.numpy(), mode="L").save(buffer, **LOSSLESS_FORMATS[lossless_format])
    return buffer.getvalue()


def unpack_latent_image(data: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`pack_latent_image` (any of its formats): float ``[M, h, w]``; ``ValueError`` if malformed."""
    channels, height, width = shape
    rows, columns = _mosaic_grid(channels)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            # WebP stores the grayscale mosaic as RGB with equal channels.
            mosaic = image if image.mode == "L" else image.getchannel(0)
    except Exception as err:  # Pillow raises many types for broken images
        raise ValueError(f"latent image does not decode ({type(err).__name__})") from None
    if mosaic.size != (columns * width, rows * height):
        raise ValueError(f"latent image is {mosaic.size[0]}x{mosaic.size[1]}, expected {columns * width}x{rows * height}")
    tiles = torch.frombuffer(bytearray(mosaic.tobytes()), dtype=torch.uint8)
    tiles = tiles.reshape(rows, height, columns, width).permute(0, 2, 1, 3).reshape(rows * columns, height, width)
    return tiles[:channels].float()


@register_codec
class WaLLoC(Codec):
    """WaLLoC codec. Latent ``y``: ``[B, M, H / 2**J, W / 2**J]``; one stream.

    Args:
        levels: ``J``, wavelet packet levels.
        latent_channels: ``M``.
        wavelet: PyWavelets name of the wavelet (CDF 9/7 ``bior4.4`` in the paper).
        bottleneck: ``"bounded"`` (PNG/WebP of b-bit integers) or ``"factorized"`` (rANS).
        bits: ``b`` of the bounded bottleneck (1..8, one byte per value in the image).
        lossless_format: ``"png"`` or ``"webp"`` (bounded bottleneck only).
        encoder_hidden: width of the optional residual 1x1 MLP after the projection (0: purely linear).
        decoder_channels, decoder_blocks: width and number of residual blocks of the decoder
            (an attention block sits in the middle).
    """

    codec_id = "walloc"
    num_streams = 1

    def __init__(
        self,
        levels: int = 3,
        latent_channels: int = 12,
        wavelet: str = "bior4.4",
        bottleneck: str = "bounded",
        bits: int = 8,
        lossless_format: str = "png",
        encoder_hidden: int = 0,
        decoder_channels: int = 128,
        decoder_blocks: int = 4,
    ):
        super().__init__()
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be one of {BOTTLENECKS}, got {bottleneck!r}")
        if lossless_format not in LOSSLESS_FORMATS:
            raise ValueError(f"lossless_format must be one of {tuple(LOSSLESS_FORMATS)}, got {lossless_format!r}")
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.config = {
            "levels": int(levels), "latent_channels": int(latent_channels), "wavelet": wavelet, "bottleneck": bottleneck,
            "bits": int(bits), "lossless_format": lossless_format, "encoder_hidden": int(encoder_hidden),
            "decoder_channels": int(decoder_channels), "decoder_blocks": int(decoder_blocks),
        }
        self.downsampling = 2**levels
        packets = 3 * 4**levels
        self.wpt = WaveletPacket2d(wavelet, levels)
        projection = nn.Conv2d(packets, latent_channels, 1)
        self.encoder = nn.Sequential(projection, _ResidualMLP(latent_channels, encoder_hidden)) if encoder_hidden else projection
        half = decoder_blocks // 2
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, decoder_channels, 1),
            *[ResidualBlock(decoder_channels, decoder_channels) for _ in range(half)],
            AttentionBlock(decoder_channels),
            *[ResidualBlock(decoder_channels, decoder_channels) for _ in range(decoder_blocks - half)],
            nn.Conv2d(decoder_channels, packets, 1),
        )
        self.max_level = 2**bits - 1
        # Bounded: the rate model of the integers in [0, 2**b - 1]; factorized: the coded density.
        init_scale = self.max_level if bottleneck == "bounded" else 10
        self.entropy_bottleneck = EntropyBottleneck(latent_channels, init_scale=init_scale)

    @property
    def dimension_reduction(self) -> float:
        """Input values per latent value: ``3 * 4**J / M``."""
        return 3 * 4 ** self.config["levels"] / self.config["latent_channels"]

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous latent ``y`` of ``x``: ``[B, 3, H, W] -> [B, M, H / 2**J, W / 2**J]``."""
        return self.encoder(self.wpt(x - 0.5))

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[B, 3, H, W]`` (not clamped) from the quantised latent."""
        if self.config["bottleneck"] == "bounded":
            y_hat = y_hat * (2 / self.max_level) - 1  # integers -> [-1, 1]
        return self.wpt.inverse(self.decoder(y_hat)) + 0.5

    def _bounded(self, y: torch.Tensor) -> torch.Tensor:
        return torch.special.ndtr(y) * self.max_level

    def _bounded_integers(self, y: torch.Tensor) -> torch.Tensor:
        return torch.round(self._bounded(y)).clamp_(0, self.max_level)

    def latent_likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """``p(values)`` under the factorized density, per element (``values`` ``[B, M, h, w]``)."""
        channels_first = values.transpose(0, 1).reshape(values.shape[1], 1, -1)
        likelihood, _, _ = self.entropy_bottleneck._likelihood(channels_first)
        likelihood = self.entropy_bottleneck.likelihood_lower_bound(likelihood)
        return likelihood.reshape(values.shape[1], values.shape[0], *values.shape[2:]).transpose(0, 1)

    def forward(self, x):
        y = self.analysis(x)
        if self.config["bottleneck"] == "factorized":
            y_hat, likelihoods = self.entropy_bottleneck(y)
        else:
            q = self._bounded(y)
            y_hat = q + torch.empty_like(q).uniform_(-0.5, 0.5) if self.training else self._bounded_integers(y)
            likelihoods = self.latent_likelihood(y_hat)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": likelihoods}}

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised latent ``y_hat`` the decoder will see, without coding it (encoder only)."""
        y = self.analysis(x)
        if self.config["bottleneck"] == "bounded":
            return self._bounded_integers(y)
        return quantize_factorized(self.entropy_bottleneck, y)

    def _compress(self, x):
        if x.shape[0] != 1:
            raise ValueError("WaLLoC codes one image at a time")
        if self.config["bottleneck"] == "bounded":
            return [pack_latent_image(self.encode_latents(x)[0], self.config["lossless_format"])]
        encoder = self.coder.encoder()
        encode_factorized(self.entropy_bottleneck, self.analysis(x), encoder)
        return [encoder.finish()]

    def decode_latents(self, strings: list[bytes], size: tuple[int, int]) -> torch.Tensor:
        """``y_hat`` ``[1, M, H / 2**J, W / 2**J]`` from a coded stream: entropy decoding only."""
        self.ensure_tables()
        shape = (1, self.config["latent_channels"], size[0] // self.downsampling, size[1] // self.downsampling)
        if self.config["bottleneck"] == "factorized":
            return decode_factorized(self.entropy_bottleneck, self.coder.decoder(strings[0]), shape)
        values = unpack_latent_image(strings[0], shape[1:])
        if values.max() > self.max_level:
            raise ValueError(f"latent values exceed {self.config['bits']} bits")
        return values[None]

    def _decompress(self, strings, size):
        return self.synthesis(self.decode_latents(strings, size))
