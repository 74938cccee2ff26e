"""Reading images as 8-bit RGB arrays, from folders or from scikit-image's bundled photographs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CodecLabError
from ..files import check_input

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
# Largest image read or decoded (pixels), checked before any pixel is decoded or allocated:
# 2**28 (268 megapixels) by default, so a 100-megapixel photo works; $CODECLAB_MAX_PIXELS overrides.
DEFAULT_MAX_PIXELS = 1 << 28
# Largest block a codec runs on at once (an untiled image, or one tile): 2**22 pixels (4 MP,
# 2048x2048), which bounds the peak memory of a decode; $CODECLAB_MAX_TILE_PIXELS overrides.
DEFAULT_MAX_TILE_PIXELS = 1 << 22


def _limit(variable: str, default: int) -> int:
    value = os.environ.get(variable, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise CodecLabError(f"{variable} must be a whole number, got {value!r}") from None


def max_pixels() -> int:
    """The image pixel limit in force (``$CODECLAB_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`)."""
    return _limit("CODECLAB_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_tile_pixels() -> int:
    """The per-tile pixel limit (``$CODECLAB_MAX_TILE_PIXELS`` or :data:`DEFAULT_MAX_TILE_PIXELS`)."""
    return _limit("CODECLAB_MAX_TILE_PIXELS", DEFAULT_MAX_TILE_PIXELS)


def check_pixels(height: int, width: int, what: str) -> None:
    """Refuse an image of more pixels than :func:`max_pixels` allows, with a one-line reason."""
    limit = max_pixels()
    if height * width > limit:
        raise CodecLabError(f"{what} is {width}x{height} = {height * width} pixels, over the limit of {limit} "
                            "(raise it with CODECLAB_MAX_PIXELS)")


# Colour photographs that ship inside scikit-image (no download needed). The first four are
# the default test images; training draws crops from all of them.
_BUNDLED_TEST = ("astronaut", "coffee", "chelsea", "rocket")
_BUNDLED_TRAIN = _BUNDLED_TEST + ("immunohistochemistry", "hubble_deep_field", "retina")


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> ``float32 [3, H, W]`` in [0, 1]."""
    # A copy: Pillow's arrays are read-only, which torch warns about.
    return torch.from_numpy(np.array(image.transpose(2, 0, 1), order="C")).float().div_(255.0)


def stderr_notice(message: str) -> None:
    print(f"codeclab: notice: {message}", file=sys.stderr)


SPLITS_FILE = "SPLITS.txt"


def list_images(folder: str | Path, splits: Sequence[str] | None = None) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; with ``splits``, only those that the
    folder's ``SPLITS.txt`` (lines ``<split> <file name>``, as BSDS500's) puts in one of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CodecLabError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if splits is not None:
        listing = folder / SPLITS_FILE
        if not listing.is_file():
            raise CodecLabError(f"splits {list(splits)} asked of {folder}, which has no {SPLITS_FILE}")
        chosen = {name for split, name in (line.split(maxsplit=1) for line in listing.read_text().splitlines() if line.strip())
                  if split in splits}
        paths = [p for p in paths if p.name in chosen]
    if not paths:
        what = f"in splits {list(splits)} " if splits is not None else ""
        raise CodecLabError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) {what}in {folder}")
    return paths


def read_image(path: str | Path, notice: Callable[[str], None] | None = stderr_notice) -> np.ndarray:
    """An image file as ``uint8 [H, W, 3]`` RGB.

    Grayscale is replicated to three channels, alpha is dropped (composited on nothing: the
    colour channels are kept as they are), palettes are expanded (a transparent entry dropped),
    16-bit grayscale is scaled to 8 bits (``round(v / 257)``), 16-bit colour keeps its high byte
    (Pillow's reading), an EXIF orientation is applied, and only the first frame of an animation
    or multi-page file is read; each change is reported through ``notice``. 32-bit integer samples
    outside 0..65535 and floating-point images are refused. The size is
    checked against :func:`max_pixels` from the header, before any pixel is decoded.
    """
    path = check_input(path, "image")
    bomb_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the project's own limit, with its own message, replaces Pillow's
        with Image.open(path) as img:
            check_pixels(img.height, img.width, f"image {path}")
            sixteen_bit_colour = img.mode in ("RGB", "RGBA") and any(";16" in str(tile.args) for tile in img.tile)
            img.load()
            say = notice or (lambda _message: None)
            if sixteen_bit_colour:
                say(f"{path.name}: 16-bit colour reduced to 8 bits")
            if getattr(img, "n_frames", 1) > 1:
                say(f"{path.name}: {img.n_frames} frames (an animation or a multi-page file): only the first is coded; "
                    "to code them all, save them as a folder of PNG frames and encode the folder")
            orientation = img.getexif().get(0x0112, 1)
            if orientation not in (1, None):
                say(f"{path.name}: EXIF orientation {orientation} applied")
                img = ImageOps.exif_transpose(img)
            return to_rgb8(img, path.name, notice)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CodecLabError(f"cannot read image {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit


_STRIP_ROWS = 256  # rows converted at once: a strip's temporaries stay a few MB on any width


def sixteen_bit_gray_to_rgb8(img: Image.Image, name: str) -> np.ndarray:
    """A 16-bit (or 32-bit integer) grayscale image as ``uint8 [H, W, 3]``: ``round(v / 257)``, in
    integers and a strip of rows at a time, so a huge image needs no float64 copy. ``v / 257`` is
    never half-way between integers (257 is odd), so on ``v`` in 0..65535 ``(v + 128) // 257`` is
    exactly that rounding. A 32-bit sample outside 0..65535 is refused, not clipped: its scale is
    unknown."""
    rgb = np.empty((img.height, img.width, 3), dtype=np.uint8)
    for top in range(0, img.height, _STRIP_ROWS):
        strip = np.asarray(img.crop((0, top, img.width, min(top + _STRIP_ROWS, img.height)))).astype(np.int64)
        if strip.min() < 0 or strip.max() > 65535:
            raise CodecLabError(f"{name}: 32-bit integer samples outside 0..65535 ({strip.min()}..{strip.max()}) are not supported")
        rgb[top : top + _STRIP_ROWS] = ((strip + 128) // 257)[:, :, None]
    return rgb


def to_rgb8(img: Image.Image, name: str, notice: Callable[[str], None] | None) -> np.ndarray:
    """Convert a PIL image to ``uint8 [H, W, 3]`` (see :func:`read_image`)."""
    say = notice or (lambda _message: None)
    if img.width == 0 or img.height == 0:
        raise CodecLabError(f"{name} has no pixels")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        say(f"{name}: 16-bit grayscale converted to 8-bit RGB")
        return sixteen_bit_gray_to_rgb8(img, name)
    if mode == "F":
        raise CodecLabError(f"{name}: floating-point images are not supported")
    if mode != "RGB":
        kind = {"L": "grayscale", "LA": "grayscale with alpha", "RGBA": "RGBA", "P": "palette", "1": "bilevel"}.get(mode, mode)
        dropped = " (alpha dropped)" if "A" in mode else " (its transparency dropped)" if "transparency" in img.info else ""
        say(f"{name}: {kind} image converted to RGB{dropped}")
        # Through RGBA: Pillow warns when a transparent palette goes straight to RGB.
        img = (img.convert("RGBA") if "transparency" in img.info else img).convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _bundled(names: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    import skimage.data

    return [(name, np.ascontiguousarray(getattr(skimage.data, name)())) for name in names]


def default_test_images() -> list[tuple[str, np.ndarray]]:
    """Four colour photographs bundled with scikit-image, as ``(name, uint8 [H, W, 3])``."""
    return _bundled(_BUNDLED_TEST)


def default_train_images() -> list[tuple[str, np.ndarray]]:
    """The bundled colour photographs used when no training folder is configured."""
    return _bundled(_BUNDLED_TRAIN)
