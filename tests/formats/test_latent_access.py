"""Compressed-domain access (codeclab/formats/latent_access.py) reads a file through the checked
decoder: a variable-rate file's level and a file's own coder apply, damage is refused."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.errors import CodecLabError
from codeclab.formats import container
from codeclab.formats.image_file import decode_image_y, encode_image
from codeclab.formats.latent_access import y_hat_of_file
from codeclab.formats.model_file import load_model
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"


@pytest.fixture(scope="module")
def image():
    return np.asarray(Image.open(GOLDEN / "astronaut_97x131.png").convert("RGB"))


def test_a_variable_rate_file_gives_the_latent_of_its_level(image, tmp_path):
    codec = load_model(GOLDEN / "container2-mbt2018-mean.safetensors")
    data = encode_image(codec, image, level=3)
    (tmp_path / "vr.clab").write_bytes(data)
    (expected,) = decode_image_y(data, codec)
    assert torch.equal(y_hat_of_file(codec, tmp_path / "vr.clab"), expected[0])
    assert not torch.equal(expected, decode_image_y(encode_image(codec, image, level=0), codec)[0])


def test_a_file_of_the_other_coder_and_a_damaged_file(image, tmp_path):
    codec = load_model(GOLDEN / "mbt2018-mean.safetensors")
    (tmp_path / "old.clab").write_bytes((GOLDEN / "mbt2018-mean.compressai.clab").read_bytes())
    (expected,) = decode_image_y((GOLDEN / "mbt2018-mean.clab").read_bytes(), codec)
    assert torch.equal(y_hat_of_file(codec, tmp_path / "old.clab"), expected[0])  # the same latent, by compressai's rANS
    header, streams = container.unpack(encode_image(codec, image))
    (tmp_path / "edited.clab").write_bytes(container.pack(replace(header, width=130), streams))
    with pytest.raises(CodecLabError, match="latent check"):
        y_hat_of_file(codec, tmp_path / "edited.clab")
    (tmp_path / "tiled.clab").write_bytes(encode_image(codec, image, tile=64))
    with pytest.raises(CodecLabError, match="is tiled"):
        y_hat_of_file(codec, tmp_path / "tiled.clab")
