"""WaLLoC's bounded latent, stored as a lossless image (Jacobellis & Yadwadkar, "Learned
Compression for Compressed Learning", 2024).

The mapping of the paper and its official code, with ``Phi`` the standard normal CDF and ``b`` bits::

    s = (2^(b-1) - 1) / 1.85,   L = 2^(b-1) - 1/2 - 10^-3
    q = 2 L (Phi(y / s) - 1/2)                       in (-L, L); rounded: integers in [-127, 127] at b = 8
    y_hat = s Phi^-1(clip(q / 2L + 1/2, 10^-4, 1 - 10^-4))          what the synthesis sees

with ``U(-1/2, 1/2)`` noise on ``q`` in training and rounding at test time. The official loss is
MSE only, so this mapping has no rate model: the likelihoods are empty and the rate is whatever
the lossless image codec makes of the integers. CodecLab's first mapping, which model files
before format 3 use, is :class:`codeclab.compat.entropy_models.BoundedLatentImageV1`.

The integers of the ``M`` channels (offset to [1, 255] at b = 8) are tiled
into a mosaic and stored losslessly (``lossless_format``); the rate is the size of that image::

    y ──► round(q(y)) ──► b-bit mosaic ──► PNG / WebP ──► stream

* ``"png"`` (default), ``"webp"``: one grayscale mosaic, channel ``c`` at tile row ``c // k``,
  column ``c % k`` with ``k = ceil(sqrt(M))`` (the official ``latent_to_pil(z, bits, 1)`` pads
  ``M`` to a square number of zero channels first; the tiles are the same);
* ``"webp_rgb"``: the official ``latent_to_pil(z, bits, 3)`` saved as lossless WebP, the smallest
  of the official examples: three colour planes, each an ``n x n`` mosaic of ``M / 3``
  consecutive channels (``'(c nh nw) h w -> (nh h) (nw w) c'``), zero channels padding ``M`` to
  ``3 n^2``.

Exact: the integers round-trip bit for bit; ``y_hat`` is an elementwise function of them.
"""

from __future__ import annotations

import io
import math

import torch
from PIL import Image
from torch import Tensor

from .base import ENTROPY_MODELS, LatentEntropyModel

LOSSLESS_FORMATS = {
    "png": {"format": "PNG", "compress_level": 6},
    "webp": {"format": "WEBP", "lossless": True, "quality": 100, "method": 4},
    "webp_rgb": {"format": "WEBP", "lossless": True, "quality": 100, "method": 4},
}
# Colour planes of each format's mosaic.
PLANES = {"png": 1, "webp": 1, "webp_rgb": 3}


def _mosaic_grid(channels: int, planes: int) -> tuple[int, int]:
    """(rows, columns) of the tile grid of each colour plane: ``ceil(sqrt(M))`` columns for one
    plane, an ``n x n`` square per plane for three (the official ``latent_to_pil``)."""
    per_plane = math.ceil(channels / planes)
    columns = math.ceil(math.sqrt(per_plane))
    return (math.ceil(per_plane / columns) if planes == 1 else columns), columns


def pack_latent_image(q: Tensor, lossless_format: str = "png") -> bytes:
    """``[M, h, w]`` integers in [0, 255] -> lossless bytes of the format's mosaic (module docstring)."""
    channels, height, width = q.shape
    planes = PLANES[lossless_format]
    rows, columns = _mosaic_grid(channels, planes)
    tiles = torch.zeros(planes * rows * columns, height, width, dtype=torch.uint8)
    tiles[:channels] = q.to(torch.uint8)
    # Channel c = (plane, row, column) in that order: '(c nh nw) h w -> (nh h) (nw w) c'.
    mosaic = tiles.reshape(planes, rows, columns, height, width).permute(1, 3, 2, 4, 0)
    mosaic = mosaic.reshape(rows * height, columns * width, planes).squeeze(-1)
    buffer = io.BytesIO()
    Image.fromarray(mosaic.contiguous().numpy(), mode="L" if planes == 1 else "RGB").save(buffer, **LOSSLESS_FORMATS[lossless_format])
    return buffer.getvalue()


def unpack_latent_image(data: bytes, shape: tuple[int, int, int], lossless_format: str = "png") -> Tensor:
    """Inverse of :func:`pack_latent_image`: float ``[M, h, w]``; ``ValueError`` if malformed."""
    channels, height, width = shape
    planes = PLANES[lossless_format]
    rows, columns = _mosaic_grid(channels, planes)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            # WebP stores a grayscale mosaic as RGB with equal channels.
            mosaic = (image if image.mode == "L" else image.getchannel(0)) if planes == 1 else image.convert("RGB")
    except Exception as err:  # Pillow raises many types for broken images
        raise ValueError(f"latent image does not decode ({type(err).__name__})") from None
    if mosaic.size != (columns * width, rows * height):
        raise ValueError(f"latent image is {mosaic.size[0]}x{mosaic.size[1]}, expected {columns * width}x{rows * height}")
    pixels = torch.frombuffer(bytearray(mosaic.tobytes()), dtype=torch.uint8)
    tiles = pixels.reshape(rows, height, columns, width, planes).permute(4, 0, 2, 1, 3)
    return tiles.reshape(planes * rows * columns, height, width)[:channels].float()


SCALE_DIVISOR, LIMIT_MARGIN, CLIP = 1.85, 1e-3, 1e-4


@ENTROPY_MODELS.register("bounded")
class BoundedLatentImage(LatentEntropyModel):
    """``M`` channels of ``b``-bit integers in a lossless PNG/WebP mosaic; one stream.

    Args:
        M: latent channels.  bits: ``b`` (1..8, one byte per value in the image).
        lossless_format: ``"png"``, ``"webp"`` or ``"webp_rgb"`` (module docstring).
    """

    num_streams = 1

    def __init__(self, M: int, bits: int = 8, lossless_format: str = "png"):
        super().__init__("noise")
        if lossless_format not in LOSSLESS_FORMATS:
            raise ValueError(f"lossless_format must be one of {tuple(LOSSLESS_FORMATS)}, got {lossless_format!r}")
        if not 2 <= bits <= 8:
            raise ValueError(f"bits must be in 2..8, got {bits}")
        self.M, self.bits, self.lossless_format = int(M), int(bits), lossless_format
        half = 2 ** (bits - 1)
        self.scale, self.limit = (half - 1) / SCALE_DIVISOR, half - 0.5 - LIMIT_MARGIN
        self.low, self.high, self.offset = -(half - 1), half - 1, half  # stored byte: q + offset

    def bounded(self, y: Tensor) -> Tensor:
        """The continuous ``q`` before rounding."""
        return 2 * self.limit * (torch.special.ndtr(y / self.scale) - 0.5)

    def decoder_input(self, q: Tensor) -> Tensor:
        """What the synthesis sees for (noisy or integer) ``q``."""
        return self.scale * torch.special.ndtri((q / (2 * self.limit) + 0.5).clamp(CLIP, 1 - CLIP))

    def integers(self, y: Tensor) -> Tensor:
        return torch.round(self.bounded(y)).clamp_(self.low, self.high)

    def quantize(self, y, level=None):
        self.check_level(level)
        return self.decoder_input(self.integers(y))

    def forward(self, y, level=None):
        self.check_level(level)
        if not self.training:
            return {"y_hat": self.quantize(y), "likelihoods": self.rate(self.integers(y))}
        q = self.bounded(y)
        q = q + torch.empty_like(q).uniform_(-0.5, 0.5)
        return {"y_hat": self.decoder_input(q), "likelihoods": self.rate(q)}

    def rate(self, q: Tensor) -> dict:
        """The likelihoods of noisy or integer ``q``: none (the official loss is MSE only)."""
        return {}

    def compress(self, y, coder, level=None):
        self.check_level(level)
        if y.shape[0] != 1:
            raise ValueError("the bounded latent image holds one image at a time")
        q = self.integers(y)
        return [pack_latent_image(q[0] + self.offset, self.lossless_format)], self.decoder_input(q)

    def decompress(self, streams, shape, coder, level=None):
        self.check_level(level)
        q = unpack_latent_image(streams[0], (self.M, *shape), self.lossless_format) - self.offset
        if q.min() < self.low or q.max() > self.high:
            raise ValueError(f"latent values outside the {self.bits}-bit range")
        return self.decoder_input(q)[None]
