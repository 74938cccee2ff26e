"""Tiled coding: large images as independent tiles (container version 3), bounded by the tile."""

import numpy as np
import pytest
import torch

from codeclab.codecs import mbt2018_mean
from codeclab.errors import CodecLabError
from codeclab.formats import container
from codeclab.formats.image_file import decode_image, encode_image, tile_grid


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    codec = mbt2018_mean(16, 24).eval()
    with torch.no_grad():
        codec.g_a[-1].weight.mul_(10)
    return codec


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:200, 0:300]
    return np.clip(np.stack([x, y, x + y], -1) * 0.6 + rng.normal(0, 8, (200, 300, 3)), 0, 255).astype(np.uint8)


def test_tile_grid_covers_the_image_row_by_row():
    assert tile_grid(200, 300, 128) == [(0, 0, 128, 128), (0, 128, 128, 128), (0, 256, 128, 44),
                                        (128, 0, 72, 128), (128, 128, 72, 128), (128, 256, 72, 44)]


def test_a_large_image_is_coded_as_independent_tiles(codec, image):
    data = encode_image(codec, image, tile=128)
    header, streams = container.unpack(data)
    assert header.version == 5 and header.tile == 128 and len(streams) == 6 * codec.num_streams
    decoded = decode_image(data, codec)
    # Each tile decodes exactly as the same pixels coded as an image of their own.
    for index, (top, left, h, w) in enumerate(tile_grid(200, 300, 128)):
        alone = decode_image(encode_image(codec, np.ascontiguousarray(image[top : top + h, left : left + w])), codec)
        assert np.array_equal(decoded[top : top + h, left : left + w], alone), index


def test_images_within_one_tile_are_written_untiled(codec, image):
    header, _ = container.unpack(encode_image(codec, image))  # 300 x 200 < 1024
    assert header.tile is None


def test_threads_do_not_change_the_file_or_the_image(codec, image):
    one = encode_image(codec, image, tile=128)
    assert encode_image(codec, image, tile=128, threads=2) == one
    assert np.array_equal(decode_image(one, codec, threads=2), decode_image(one, codec))


def test_a_tile_size_that_does_not_fit_the_codec_is_rounded_up(codec, image):
    header, _ = container.unpack(encode_image(codec, image, tile=100))
    assert header.tile == 128


def test_a_file_whose_tiles_and_streams_disagree_is_refused(codec, image):
    header, streams = container.unpack(encode_image(codec, image, tile=128))
    fewer = container.pack(container.Header(**{**header.__dict__}), streams[:-2])
    with pytest.raises(CodecLabError, match="writes 2 per tile for 6 tiles"):
        decode_image(fewer, codec)
    odd = container.pack(container.Header(**{**header.__dict__, "tile": 100}), streams)
    with pytest.raises(CodecLabError, match="tile size 100 is not a multiple of 64"):
        decode_image(odd, codec)


def test_a_tile_size_over_the_limit_is_refused_even_for_an_image_within_one_tile(codec, image, monkeypatch):
    """Otherwise the encoder would write one block that the decoder refuses."""
    monkeypatch.setenv("CODECLAB_MAX_TILE_PIXELS", str(128 * 128))
    with pytest.raises(CodecLabError, match="tile size 1024 is over the limit of 16384 pixels per tile"):
        encode_image(codec, image)  # 300 x 200 fits one 1024 tile
    header, _ = container.unpack(encode_image(codec, image, tile=128))
    assert header.tile == 128
