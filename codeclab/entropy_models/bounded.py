"""WaLLoC's bounded latent, stored as a lossless image (Jacobellis & Yadwadkar, "Learned
Compression for Compressed Learning", 2024).

``q = Phi(y) * (2**b - 1)``, with ``Phi`` the standard normal CDF, plus ``U(-1/2, 1/2)`` noise
in training and rounding to ``b``-bit integers at test time. The integers of the ``M``
channels are tiled into one grayscale mosaic and stored losslessly as PNG or WebP
(``lossless_format``); the rate is the size of that image. Training needs a differentiable
rate: a factorized density (:class:`~.factorized.EntropyBottleneck`) of the noisy integers
gives ``-log2 p(q~)``, used in the loss only.

::

    y ──► round(Phi(y) * (2**b - 1)) ──► b-bit mosaic ──► PNG / WebP ──► stream

Exact: the integers round-trip bit for bit, so the decoder sees exactly the encoder's ``y_hat``
(which is in integer units: the synthesis maps it to [-1, 1]).
"""

from __future__ import annotations

import io
import math

import torch
from PIL import Image
from torch import Tensor

from .base import ENTROPY_MODELS, LatentEntropyModel
from .factorized import EntropyBottleneck

LOSSLESS_FORMATS = {
    "png": {"format": "PNG", "compress_level": 6},
    "webp": {"format": "WEBP", "lossless": True, "quality": 100, "method": 4},
}


def _mosaic_grid(channels: int) -> tuple[int, int]:
    """(rows, columns) of the tile grid holding ``channels`` latent planes."""
    columns = math.ceil(math.sqrt(channels))
    return math.ceil(channels / columns), columns


def pack_latent_image(q: Tensor, lossless_format: str = "png") -> bytes:
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


def unpack_latent_image(data: bytes, shape: tuple[int, int, int]) -> Tensor:
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


@ENTROPY_MODELS.register("bounded")
class BoundedLatentImage(LatentEntropyModel):
    """``M`` channels of ``b``-bit integers in a lossless PNG/WebP mosaic; one stream.

    Args:
        M: latent channels.  bits: ``b`` (1..8, one byte per value in the image).
        lossless_format: ``"png"`` or ``"webp"``.
    """

    num_streams = 1

    def __init__(self, M: int, bits: int = 8, lossless_format: str = "png"):
        super().__init__("noise")
        if lossless_format not in LOSSLESS_FORMATS:
            raise ValueError(f"lossless_format must be one of {tuple(LOSSLESS_FORMATS)}, got {lossless_format!r}")
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.M, self.bits, self.lossless_format = int(M), int(bits), lossless_format
        self.max_level = 2**bits - 1
        # The rate model of the integers in [0, 2**b - 1].
        self.entropy_bottleneck = EntropyBottleneck(M, init_scale=self.max_level)

    def _bounded(self, y: Tensor) -> Tensor:
        return torch.special.ndtr(y) * self.max_level

    def quantize(self, y, level=None):
        self.check_level(level)
        return torch.round(self._bounded(y)).clamp_(0, self.max_level)

    def forward(self, y, level=None):
        self.check_level(level)
        q = self._bounded(y)
        y_hat = q + torch.empty_like(q).uniform_(-0.5, 0.5) if self.training else self.quantize(y)
        return {"y_hat": y_hat, "likelihoods": {"y": self.entropy_bottleneck.channel_likelihood(y_hat)}}

    def compress(self, y, coder, level=None):
        self.check_level(level)
        if y.shape[0] != 1:
            raise ValueError("the bounded latent image holds one image at a time")
        y_hat = self.quantize(y)
        return [pack_latent_image(y_hat[0], self.lossless_format)], y_hat

    def decompress(self, streams, shape, coder, level=None):
        self.check_level(level)
        values = unpack_latent_image(streams[0], (self.M, *shape))
        if values.max() > self.max_level:
            raise ValueError(f"latent values exceed {self.bits} bits")
        return values[None]
