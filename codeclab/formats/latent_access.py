"""Compressed-domain access: quantised latents as tensors, without running the decoder network.

Every codec gives its quantised latent ``y_hat`` (:meth:`~codeclab.codecs.Codec.quantize`,
:meth:`~codeclab.codecs.Codec.decompress_y`); for codecs whose latents are meant to be learned on
directly (WaLLoC) a downstream model can read it instead of pixels. Two sources:

* a CodecLab file (recognised by its magic bytes, any name): only the entropy decoding runs (rANS or PNG/WebP), the costly
  synthesis transform is skipped; the latent is exactly the one the encoder coded;
* an image file: only the (cheap) encoder runs, giving the same latent the file would hold.

Latents come back as float tensors ``[M, ceil(H / s), ceil(W / s)]`` (``s`` the codec's
downsampling; images are replicate-padded to multiples of ``s``, as when coding). For WaLLoC's
bounded bottleneck the values are the b-bit integers, for the factorized one ``round(y - m) + m``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..codecs import Codec
from ..data.images import IMAGE_SUFFIXES, read_image
from ..errors import CodecLabError
from . import container
from .file_coding import codec_input
from .image_file import decode_image_y


def _is_codeclab_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(container.MAGIC)) == container.MAGIC


def y_hat_of_file(codec: Codec, path: str | Path) -> torch.Tensor:
    """``y_hat`` ``[M, h, w]`` of one image or CodecLab file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CodecLabError(f"file not found: {path}")
    if _is_codeclab_file(path):
        # The decoder's own checks: model, limits, the file's coder and rate level, stream ends, latent check.
        latents = decode_image_y(path.read_bytes(), codec)
        if len(latents) > 1:
            raise CodecLabError(f"{path} is tiled: its latent is not one tensor")
        return latents[0][0]
    return codec.quantize(codec_input(read_image(path, notice=None), codec.downsampling))[0]


def y_hat_of_folder(codec: Codec, folder: str | Path) -> dict[str, torch.Tensor]:
    """Latents of every image and CodecLab file directly in ``folder``, by file name (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CodecLabError(f"folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or _is_codeclab_file(p)))
    if not paths:
        raise CodecLabError(f"no images or CodecLab files in {folder}")
    with torch.no_grad():
        return {path.name: y_hat_of_file(codec, path) for path in paths}
