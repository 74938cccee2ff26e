"""Whole images to CodecLab files and back: tiling and the container (the checks and helpers it
shares with video files are in :mod:`.file_coding`).

Images larger than the tile size (:data:`DEFAULT_TILE`, 1024 pixels, a multiple of the codec's
downsampling) in either side are cut into independent square tiles, row by row, each coded like
a small image; memory then depends on the tile, not the image, and tiles can be coded on several
threads. Smaller images (Kodak's 768x512 among them) are one tile.

Every file carries a latent check (:mod:`.container`, version 5): decoding recomputes it from the
latents it decoded and refuses the file, before any pixel is returned, when it differs.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from ..codecs import Codec, CompressedImage
from ..codecs.refinement import SGASchedule, refine_latents
from ..coding import EntropyCoder, get_coder
from ..data.images import check_pixels, max_tile_pixels
from ..errors import CodecLabError
from ..measures import bits_per_pixel
from ..progress import progress_bar
from . import container
from .file_coding import (
    CheckedCoder, check_file_level, check_level, check_model, codec_input, file_synthesis, latent_crc, model_hash, padded_size,
    stream_errors,
)
from .model_header import quality_to_level


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise CodecLabError(f"expected an 8-bit RGB image, got array {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if not (0 < height <= container.MAX_SIDE and 0 < width <= container.MAX_SIDE):
        raise CodecLabError(f"image size {height}x{width} out of range")


DEFAULT_TILE = 1024


def tile_side(codec: Codec, tile: int) -> int:
    """``tile`` rounded up to a multiple of the codec's downsampling."""
    if tile < 1:
        raise CodecLabError(f"tile size must be positive, got {tile}")
    return -(-tile // codec.downsampling) * codec.downsampling


def tile_grid(height: int, width: int, side: int) -> list[tuple[int, int, int, int]]:
    """``(top, left, height, width)`` of each tile, row by row (edge tiles are smaller)."""
    return [(top, left, min(side, height - top), min(side, width - left))
            for top in range(0, height, side) for left in range(0, width, side)]


def file_bytes(codec: Codec, image: np.ndarray, tiles: list[CompressedImage], coder: EntropyCoder, level: int | None,
               tile: int | None, fast_decode: bool = False) -> bytes:
    """The CodecLab file of ``image`` coded as ``tiles`` (in order) by ``coder``, with its latent check."""
    strings = [s for compressed in tiles for s in compressed.strings]
    header = container.Header(
        codec.codec_id, model_hash(codec), image.shape[0], image.shape[1], tuple(map(len, strings)),
        coder=coder.name, level=level, tile=tile, fast_decode=fast_decode,
    )
    check = container.latent_check(header, [latent_crc(compressed.y_hat) for compressed in tiles])
    return container.pack(replace(header, latent_check=check), strings)


def _tiles(codec: Codec, image: np.ndarray, tile: int) -> tuple[int | None, list[np.ndarray]]:
    """The tile side written in the header (None: one tile) and the pixel blocks to code."""
    side = tile_side(codec, tile)
    # Checked for untiled images too: their padded block is at most side x side, and the decoder
    # refuses any block over the limit.
    if side * side > max_tile_pixels():
        raise CodecLabError(f"tile size {side} is over the limit of {max_tile_pixels()} pixels per tile (CODECLAB_MAX_TILE_PIXELS)")
    height, width = image.shape[:2]
    if height <= tile and width <= tile:
        return None, [image]
    return side, [image[top : top + h, left : left + w] for top, left, h, w in tile_grid(height, width, side)]


def _map_tiles(function, tiles: list, threads: int, progress: bool) -> list:
    """``function`` over ``tiles`` on ``threads`` threads, with a progress bar when there are several."""
    with progress_bar(total=len(tiles), desc="tiles", unit="tile", enabled=progress and len(tiles) > 1) as bar:
        def step(item):
            result = function(item)
            bar.update()
            return result

        if threads <= 1 or len(tiles) == 1:
            return [step(item) for item in tiles]
        with ThreadPoolExecutor(threads) as pool:  # torch and the coder release the GIL
            return list(pool.map(step, tiles))


def encode_image(codec: Codec, image: np.ndarray, level: int | None = None, tile: int = DEFAULT_TILE,
                 threads: int = 1, refine: int = 0, refine_lmbda: float | None = None, progress: bool = False,
                 fast_decode: bool = False, coder: EntropyCoder | None = None) -> bytes:
    """Code ``uint8 [H, W, 3]`` into the bytes of a complete CodecLab file (``level``: the rate
    level of a variable-rate model; ``tile``: the tile size; ``threads``: tiles coded at once;
    ``coder``: the entropy coder, recorded in the file (None: the default, ``codeclab``);
    ``refine``: SGA iterations per tile before coding (:mod:`codeclab.codecs.refinement`; 0: none),
    for ``refine_lmbda``, the level's lambda or the model's training lambda; ``progress``: bars
    per tile and refinement iteration on a terminal; ``fast_decode``: let decoders use the fast,
    CPU-dependent synthesis (container version 4))."""
    _check_image(image)
    check_level(codec, level)
    if refine:
        check_refinable(codec, level, refine, refine_lmbda)
    codec.ensure_tables()  # once, before any thread codes a tile
    side, blocks = _tiles(codec, image, tile)
    coder = coder or get_coder()

    def code(block):
        x = codec_input(block, codec.downsampling)
        if not refine:
            return codec.compress(x, coder, level)
        refined = refine_latents(codec, x, level, SGASchedule.stretched(refine), refine_lmbda, size=block.shape[:2],
                                 progress=progress)
        return codec.compress_y(refined.y, x.shape[-2:], coder, level, refined.side)

    return file_bytes(codec, image, _map_tiles(code, blocks, threads, progress), coder, level, side, fast_decode)


def check_refinable(codec: Codec, level: int | None, iterations: int, lmbda: float | None) -> None:
    """Refuse refinement that cannot run, before any work."""
    if iterations < 0:
        raise CodecLabError(f"--refine needs a number of iterations >= 0, got {iterations}")
    if not codec.entropy_model.refinable:
        raise CodecLabError(f"{codec.codec_id} cannot be refined: its entropy model has no relaxed pass")
    if lmbda is None and not codec.rate_levels and codec.training_lmbda is None:
        raise CodecLabError(f"{codec.codec_id} is a fixed-rate model whose file records no training lambda: "
                            "--refine needs it (--refine-lmbda)")
    if lmbda is not None and not 0 < lmbda < math.inf:
        raise CodecLabError(f"--refine-lmbda must be positive and finite, got {lmbda}")


def quality_level(codec: Codec, quality: float) -> int:
    """The level nearest to ``quality`` in [0, 1] (0: the model's lowest rate, 1: its highest)."""
    if not codec.rate_levels:
        raise CodecLabError(f"{codec.codec_id} is a fixed-rate model: --quality needs a variable-rate model")
    if not 0.0 <= quality <= 1.0:
        raise CodecLabError(f"quality must be in [0, 1], got {quality}")
    return quality_to_level(codec.rate_levels, quality)


def encode_image_at_bpp(codec: Codec, image: np.ndarray, target_bpp: float, tile: int = DEFAULT_TILE,
                        progress: bool = False, fast_decode: bool = False,
                        coder: EntropyCoder | None = None) -> tuple[bytes, int]:
    """The file of the highest level whose real size is at most ``target_bpp`` (the lowest level
    when none is), found by bisection over levels; ``g_a`` runs once, each probe re-runs only the
    entropy model (``progress``: a bar per probe on a terminal; ``coder``: as in :func:`encode_image`).
    Returns ``(file bytes, level)``."""
    _check_image(image)
    if not codec.rate_levels:
        raise CodecLabError(f"{codec.codec_id} is a fixed-rate model: --target-bpp needs a variable-rate model")
    if not 0 < target_bpp < math.inf:
        raise CodecLabError(f"target bpp must be positive and finite, got {target_bpp}")
    side, blocks = _tiles(codec, image, tile)
    coder = coder or get_coder()
    # Only the latents and padded sizes are kept across probes, not the float images.
    analysed = [(x.shape[-2:], codec.analysis(x)) for x in (codec_input(block, codec.downsampling) for block in blocks)]

    # The lowest level, then at most bit_length(levels) bisection probes.
    bar = progress_bar(total=1 + codec.rate_levels.bit_length(), desc="rate search", unit="probe", enabled=progress)

    def file_at(level: int) -> bytes:
        tiles = [codec.compress_y(y, size, coder, level) for size, y in analysed]
        bar.update()
        return file_bytes(codec, image, tiles, coder, level, side, fast_decode)

    with bar:
        low, high = 0, codec.rate_levels - 1
        best = file_at(low), low
        while low <= high:  # invariant: levels below `low` fit (or are the lowest), above `high` do not
            middle = (low + high) // 2
            data = file_at(middle)
            if bits_per_pixel(len(data), *image.shape[:2]) <= target_bpp:
                best, low = (data, middle), middle + 1
            else:
                high = middle - 1
    return best


def _checked_file(data: bytes, codec: Codec) -> tuple[container.Header, list[bytes], list[tuple[int, int, int, int]]]:
    """``(header, streams, tile grid)`` of a file that ``codec`` may decode; every check (model,
    pixel limit, stream count, rate level, tile size) comes before any decoding."""
    header, streams = container.unpack(data)
    check_model(header, codec)
    check_pixels(header.height, header.width, "the image in the file")
    if header.tile is not None and header.tile % codec.downsampling:
        raise CodecLabError(f"corrupt file: tile size {header.tile} is not a multiple of {codec.downsampling}")
    grid = tile_grid(header.height, header.width, header.tile) if header.tile else [(0, 0, header.height, header.width)]
    block = padded_size(*grid[0][2:], codec.downsampling)
    if block[0] * block[1] > max_tile_pixels():
        what = f"tiles of {header.tile}x{header.tile}" if header.tile else f"one block of {header.width}x{header.height}"
        raise CodecLabError(f"the file codes {what} pixels, over the limit of {max_tile_pixels()} per tile "
                            "(CODECLAB_MAX_TILE_PIXELS); large images are coded in tiles")
    if len(streams) != codec.num_streams * len(grid):
        raise CodecLabError(f"corrupt file: {len(streams)} streams, codec {codec.codec_id} writes "
                            f"{codec.num_streams} per tile for {len(grid)} tiles")
    check_file_level(codec, header.level)
    codec.ensure_tables()  # once, before any thread decodes a tile
    return header, streams, grid


def _tile_latent(codec: Codec, header: container.Header, streams: list[bytes], grid, index: int) -> torch.Tensor:
    """``y_hat`` of tile ``index``; ValueError unless every stream ended where its encoder began."""
    n = codec.num_streams
    checked = CheckedCoder(get_coder(header.coder))  # the coder the file names
    size = padded_size(*grid[index][2:], codec.downsampling)
    y_hat = codec.decompress_y(streams[n * index : n * (index + 1)], size, checked, header.level)
    checked.check_all_ended()
    return y_hat


def check_latents(header: container.Header, tile_crcs: list[int]) -> None:
    """Refuse a file whose decoded latents (their :func:`latent_crc`, tile by tile) are not the
    encoder's: a damaged stream under a recomputed CRC, or edited header fields."""
    if header.latent_check is not None and container.latent_check(header, tile_crcs) != header.latent_check:
        raise CodecLabError("corrupt file: the decoded latents fail the file's latent check (a damaged or edited file, "
                            "or a model with float entropy parameters decoded under another configuration)")


def decode_image_y(data: bytes, codec: Codec) -> list[torch.Tensor]:
    """The decoded latents ``y_hat`` of a CodecLab file, one per tile (entropy decoding only,
    with the same checks as :func:`decode_image`, the latent check included)."""
    header, streams, grid = _checked_file(data, codec)
    with stream_errors():
        latents = [_tile_latent(codec, header, streams, grid, index) for index in range(len(grid))]
    check_latents(header, [latent_crc(y_hat) for y_hat in latents])
    return latents


def decode_image(data: bytes, codec: Codec, threads: int = 1, progress: bool = False) -> np.ndarray:
    """Decode the bytes of a CodecLab file with ``codec``; returns ``uint8 [H, W, 3]`` (``progress``:
    a bar per tile on a terminal).

    The entropy coder and the synthesis (portable, or fast where the file allows it) are the ones
    the file names, whatever ``codec``'s transform settings. Every check (model, pixel limit, stream count,
    rate level, tile size) comes before any decoding; the latent check before the image is returned.
    """
    header, streams, grid = _checked_file(data, codec)
    image = np.empty((header.height, header.width, 3), dtype=np.uint8)
    pixels = file_synthesis(codec, header.fast_decode)

    def decode(index: int) -> int:
        top, left, height, width = grid[index]
        y_hat = _tile_latent(codec, header, streams, grid, index)
        image[top : top + height, left : left + width] = pixels(y_hat)[:height, :width]
        return latent_crc(y_hat)

    with stream_errors():
        tile_crcs = _map_tiles(decode, list(range(len(grid))), threads, progress)
    check_latents(header, tile_crcs)
    return image


