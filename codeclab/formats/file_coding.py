"""What image and video files share: the model a file names, rate levels, padding, the checked
entropy coder, the latent check's unit and the decoders' synthesis.

:mod:`.image_file` and :mod:`.video_file` code and decode through these, so the two formats check
a model, a rate level and a stream's end the same way.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from ..codecs import Codec
from ..data.images import to_tensor
from ..errors import CodecLabError
from . import container
from .model_file import weights_sha256


def model_hash(codec: Codec) -> bytes:
    """The bytes of the model hash that files written with it carry (the weights hash of a codec
    not loaded from a model file)."""
    return bytes.fromhex(codec.model_sha256 or weights_sha256(codec))[: container.MODEL_HASH_BYTES]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad ``[B, C, H, W]`` on the bottom and right to multiples of ``multiple``."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``multiple``: the size the codec coded."""
    return height + (-height % multiple), width + (-width % multiple)


def codec_input(image: np.ndarray, multiple: int) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> ``float [1, 3, H', W']`` in [0, 1], padded by :func:`pad_to_multiple`."""
    return pad_to_multiple(to_tensor(image)[None], multiple)


def file_synthesis(codec: Codec, fast_decode: bool) -> Callable[[torch.Tensor], np.ndarray]:
    """``y_hat -> uint8 [H', W', 3]`` for the latents of a file: the portable float64 synthesis
    (:meth:`Codec.portable_synthesis`), or the codec's CPU-dependent fast settings where the
    file's header allows them (``fast_decode``)."""
    synthesis = codec.synthesis if fast_decode else codec.portable_synthesis()

    def pixels(y_hat: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return to_uint8(synthesis(y_hat))

    return pixels


def to_uint8(x_hat: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` float reconstruction -> ``uint8 [H, W, 3]`` (clamped, rounded)."""
    return x_hat[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def check_level(codec: Codec, level: int | None, choices: str = "--quality, --level or --target-bpp") -> None:
    """Refuse a rate level the model cannot code; ``choices``: the rate flags the caller accepts."""
    if codec.rate_levels and level is None:
        raise CodecLabError(f"{codec.codec_id} is a variable-rate model: choose a rate with {choices}")
    if not codec.rate_levels and level is not None:
        raise CodecLabError(f"{codec.codec_id} is a fixed-rate model: it takes no rate level")
    if level is not None and not 0 <= level < codec.rate_levels:
        raise CodecLabError(f"rate level {level} out of range [0, {codec.rate_levels})")


def check_file_level(codec: Codec, level: int | None) -> None:
    """A file's rate level that ``codec`` cannot decode means a damaged file (or another model)."""
    try:
        check_level(codec, level)
    except CodecLabError:
        raise CodecLabError(f"corrupt file: rate level {level} for a model with {codec.rate_levels} levels") from None


def latent_crc(y_hat: torch.Tensor) -> int:
    """CRC-32 of a decoded latent as float32 little-endian bytes, -0 as +0 (the latent check's unit)."""
    return zlib.crc32((y_hat.detach().float() + 0.0).contiguous().numpy().astype("<f4", copy=False).tobytes())


@contextmanager
def stream_errors():
    """A malformed stream (the coder's ValueError) becomes a one-line :class:`CodecLabError`."""
    try:
        yield
    except ValueError as err:
        raise CodecLabError(f"corrupt stream: {str(err).splitlines()[0]}") from None


class CheckedCoder:
    """Passes a coder through, remembering its stream decoders, so that decoding can check that
    every stream ended exactly where its encoder began: a damaged file, or one written by another
    model or coder, then fails instead of decoding to garbage."""

    def __init__(self, coder):
        self.coder, self.decoders = coder, []
        self.name = coder.name

    def encoder(self):
        return self.coder.encoder()

    def decoder(self, data: bytes):
        decoder = self.coder.decoder(data)
        self.decoders.append(decoder)
        return decoder

    def check_all_ended(self) -> None:
        if not all(d.at_end() for d in self.decoders):
            raise ValueError("decoding did not end where the encoder began (a damaged file, another model or coder "
                             "wrote it, or a model with float entropy parameters decoded under another configuration)")


def check_model(header: container.Header, codec: Codec) -> None:
    """Refuse to decode a file with a model other than the one that wrote it."""
    if header.codec_id != codec.codec_id:
        raise CodecLabError(f"wrong model: the file was written by codec {header.codec_id!r}, the model is {codec.codec_id!r}")
    if header.model_hash != model_hash(codec):
        raise CodecLabError(
            f"wrong model: the file was written by model {header.model_hash.hex()}, the given model is {model_hash(codec).hex()}"
        )
