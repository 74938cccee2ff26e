"""Files written by older versions (model format 1, container 1, before the transform/entropy-model
composition; and one model file per later format, each written by the commit of its format) still
load, decode to the same pixels, and re-encode to the same bytes (tests/golden/README.md)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.errors import CodecLabError
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import load_model, read_metadata
from codeclab.formats.model_header import FORMAT_VERSION, READABLE_VERSIONS

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())


def _image() -> np.ndarray:
    return np.asarray(Image.open(GOLDEN / "astronaut_97x131.png").convert("RGB"))


# The CPU's kernel set (torch's ATen capability): the golden files were written on an AVX-512
# machine; a float synthesis rounds a few samples otherwise elsewhere, so the manifest records
# the pixels per capability where they differ (`decoded_sha256_by_cpu`, measured, one thread).
CPU = torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_file_decodes_to_the_same_pixels_and_reencodes_to_the_same_bytes(name):
    record = MANIFEST[name]
    model_path = GOLDEN / record["model"]
    data = (GOLDEN / name).read_bytes()
    assert len(data) == record["bytes"]
    if record.get("portable_only_on", CPU) != CPU:
        # A float entropy model (the VQGAN transformer) is not portable (README): on another CPU
        # the end-of-stream check must report the desynchronised stream, never decode garbage.
        with pytest.raises(CodecLabError, match="corrupt stream"):
            decode_image(data, load_model(model_path))
        return
    decoded = decode_image(data, load_model(model_path))
    assert decoded.shape == (97, 131, 3)
    # The files of formats 2-6 were written on an AVX2 CPU: their pixels elsewhere are not recorded.
    expected = record.get("decoded_sha256_by_cpu", {}).get(CPU, record.get("decoded_sha256"))
    if expected is not None:
        assert hashlib.sha256(decoded.tobytes()).hexdigest() == expected
    coder = "compressai" if ".compressai." in name else None
    model = load_model(model_path, coder=coder)
    index_model = name.removesuffix(".clab").rsplit("-", 1)[-1] if name.startswith("vqgan-") else None
    if index_model:
        model.index_model = index_model
    assert encode_image(model, _image()) == data


def test_every_older_model_format_has_a_golden_file():
    versions = {read_metadata(GOLDEN / record["model"])["format_version"] for record in MANIFEST.values()}
    assert versions == set(READABLE_VERSIONS) - {FORMAT_VERSION}
