"""Whole images to CodecLab files and back: padding, the container, and model checks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..codecs import Codec, CompressedImage
from ..data.images import to_tensor
from ..errors import CodecLabError
from . import container
from .model_file import weights_sha256


def model_hash(codec: Codec) -> bytes:
    """The bytes of the model's weights hash that files written with it carry."""
    return bytes.fromhex(codec.weights_hash or weights_sha256(codec))[: container.MODEL_HASH_BYTES]


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


def to_uint8(x_hat: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` float reconstruction -> ``uint8 [H, W, 3]`` (clamped, rounded)."""
    return x_hat[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def encode_image(codec: Codec, image: np.ndarray) -> bytes:
    """Code ``uint8 [H, W, 3]`` into the bytes of a complete CodecLab file."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise CodecLabError(f"expected an 8-bit RGB image, got array {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if not (0 < height <= container.MAX_SIDE and 0 < width <= container.MAX_SIDE):
        raise CodecLabError(f"image size {height}x{width} out of range")
    compressed = codec.compress(codec_input(image, codec.downsampling))
    header = container.Header(
        codec.codec_id, model_hash(codec), height, width, tuple(map(len, compressed.strings)), coder=codec.coder.name
    )
    return container.pack(header, compressed.strings)


def decode_image(data: bytes, codec: Codec) -> np.ndarray:
    """Decode the bytes of a CodecLab file with ``codec``; returns ``uint8 [H, W, 3]``.

    The entropy coder is the one named in the file, whatever ``codec`` was set to.
    """
    header, streams = container.unpack(data)
    check_model(header, codec)
    if header.coder != codec.coder.name:
        codec.set_coder(header.coder)
    if len(streams) != codec.num_streams:
        raise CodecLabError(f"corrupt file: {len(streams)} streams, codec {codec.codec_id} writes {codec.num_streams}")
    size = padded_size(header.height, header.width, codec.downsampling)
    try:
        x_hat = codec.decompress(CompressedImage(streams, size))
    except ValueError as err:
        raise CodecLabError(f"corrupt stream: {str(err).splitlines()[0]}") from None
    return to_uint8(x_hat[..., : header.height, : header.width])


def check_model(header: container.Header, codec: Codec) -> None:
    """Refuse to decode a file with a model other than the one that wrote it."""
    if header.codec_id != codec.codec_id:
        raise CodecLabError(f"wrong model: the file was written by codec {header.codec_id!r}, the model is {codec.codec_id!r}")
    if header.model_hash != model_hash(codec):
        raise CodecLabError(
            f"wrong model: the file was written by model {header.model_hash.hex()}, the given model is {model_hash(codec).hex()}"
        )
