"""Files written by older versions (model format 1, container 1, before the transform/entropy-model
composition; and one model file per later format, each written by the commit of its format) still
load, decode to the same pixels, and re-encode to the same streams and header fields, which the
current container completes with a latent check (tests/golden/README.md)."""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.errors import CodecLabError
from codeclab.formats import container
from codeclab.formats.image_file import decode_image, decode_latents, encode_image, to_uint8
from codeclab.formats.model_file import load_model, read_metadata
from codeclab.formats.model_header import FORMAT_VERSION, READABLE_VERSIONS

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())


def _image() -> np.ndarray:
    return np.asarray(Image.open(GOLDEN / "astronaut_97x131.png").convert("RGB"))


# The CPU's kernel set (torch's ATen capability). The golden files were decoded by their writers
# with a float32 synthesis, whose rounding depends on the kernels: the manifest records those
# pixels per capability where they differ (`decoded_sha256_by_cpu`, one thread), and the fast
# synthesis must still give them. Decoding by default uses the float64 synthesis, the same pixels
# on every CPU (`portable_sha256`).
CPU = torch.backends.cpu.get_cpu_capability()


def _sha256(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_file_decodes_to_the_same_pixels_and_reencodes_to_the_same_streams(name):
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
    codec = load_model(model_path)
    decoded = decode_image(data, codec)
    assert decoded.shape == (97, 131, 3) and _sha256(decoded) == record["portable_sha256"]
    # The files of formats 2-7 were written on an AVX2 CPU: their fast pixels elsewhere are not recorded.
    expected = record.get("decoded_sha256_by_cpu", {}).get(CPU, record.get("decoded_sha256"))
    if expected is not None:
        (y_hat,) = decode_latents(data, codec)
        assert _sha256(to_uint8(codec.synthesize(y_hat))[:97, :131]) == expected
    coder = "compressai" if ".compressai." in name else None
    model = load_model(model_path, coder=coder)
    index_model = name.removesuffix(".clab").rsplit("-", 1)[-1] if name.startswith("vqgan-") else None
    if index_model:
        model.index_model = index_model
    # Re-encoding writes the current container: the golden file's streams and fields plus a latent
    # check, which the golden latents pass (the encoder's y_hat is the decoder's, bit for bit).
    reencoded = encode_image(model, _image())
    header, streams = container.unpack(reencoded)
    assert header.version == container.FORMAT_VERSION and header.latent_check is not None
    assert container.pack(replace(header, latent_check=None), streams) == data
    decode_latents(reencoded, codec)


def test_every_older_model_format_has_a_golden_file():
    versions = {read_metadata(GOLDEN / record["model"])["format_version"] for record in MANIFEST.values()}
    assert versions == set(READABLE_VERSIONS) - {FORMAT_VERSION}
