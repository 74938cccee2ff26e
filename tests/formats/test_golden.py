"""Files written by older versions (model format 1, container 1, before the transform/entropy-model
composition; one model file per later model format and one bitstream per later container and
video container version, each written by the commit of its format) still load, decode to the same
pixels, and re-encode to the same streams and header fields, which the current containers
complete with latent checks (tests/golden/README.md)."""

import hashlib
import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.coding import get_coder
from codeclab.data.video import Clip
from codeclab.errors import CodecLabError
from codeclab.formats import container
from codeclab.formats.image_file import decode_image, decode_image_y, encode_image
from codeclab.formats.model_file import load_model, read_metadata
from codeclab.formats.model_header import FORMAT_VERSION, READABLE_VERSIONS
from codeclab.formats.video_container import (
    READABLE_VIDEO_VERSIONS, VIDEO_FORMAT_VERSION, frame_streams, pack_video, unpack_video,
)
from codeclab.formats.video_file import decode_video, encode_video

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
VIDEO_MANIFEST = json.loads((GOLDEN / "video_manifest.json").read_text())


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
    encode = record.get("encode", {})
    header, streams = container.unpack(data)
    if not encode.get("fast_decode"):  # a file that allows the fast synthesis decodes to CPU-dependent pixels
        decoded = decode_image(data, codec)
        assert decoded.shape == (97, 131, 3) and _sha256(decoded) == record["portable_sha256"]
    # The files of formats 2-7 and containers 2-4 were written on an AVX2 CPU: their fast pixels
    # elsewhere are not recorded. The same streams flagged for fast decoding give those pixels.
    expected = record.get("decoded_sha256_by_cpu", {}).get(CPU, record.get("decoded_sha256"))
    if expected is not None:
        fast = container.pack(replace(header, fast_decode=True), streams)
        assert _sha256(decode_image(fast, codec)) == expected
    model = load_model(model_path)
    encode = {**encode, "coder": get_coder("compressai" if ".compressai." in name else None)}
    index_model = name.removesuffix(".clab").rsplit("-", 1)[-1] if name.startswith("vqgan-") else None
    if index_model:
        model.index_model = index_model
    # Re-encoding writes the current container: the golden file's streams and fields plus a latent
    # check, which the golden latents pass (the encoder's y_hat is the decoder's, bit for bit).
    reencoded = encode_image(model, _image(), **encode)
    header, streams = container.unpack(reencoded)
    assert header.version == container.FORMAT_VERSION and header.latent_check is not None
    if data[4] == container.FORMAT_VERSION:  # a golden file of today's container (a later model format)
        assert reencoded == data
    else:
        assert container.pack(replace(header, latent_check=None), streams) == data
    decode_image_y(reencoded, codec)


def _clip() -> Clip:
    """The golden videos' input: four 50x70 crops of the astronaut image, 3 pixels apart (a Y4M source)."""
    image = _image()
    return Clip([np.ascontiguousarray(image[10:60, 3 * t : 3 * t + 70]) for t in range(4)], Fraction(25), "limited", "bt601",
                "y4m")


@pytest.mark.parametrize("name", sorted(VIDEO_MANIFEST))
def test_golden_video_decodes_to_the_same_frames_and_reencodes_to_the_same_streams(name):
    record = VIDEO_MANIFEST[name]
    codec = load_model(GOLDEN / record["model"])
    data = (GOLDEN / name).read_bytes()
    encode = record["encode"]
    assert len(data) == record["bytes"] and data[4] == (2 if encode.get("fast_decode") else 1)
    header, offset = unpack_video(data)
    if not encode.get("fast_decode"):
        assert _sha256(np.stack(decode_video(data, codec).frames)) == record["portable_sha256"]
    frames = frame_streams(data, header, offset)
    expected = record["decoded_sha256_by_cpu"].get(CPU)
    if expected is not None:
        fast = pack_video(replace(header, fast_decode=True), frames)
        assert _sha256(np.stack(decode_video(fast, codec).frames)) == expected
    reencoded = encode_video(codec, _clip(), **encode).data
    new_header, new_offset = unpack_video(reencoded)
    assert new_header.version == VIDEO_FORMAT_VERSION
    if record["encoded_on"] != CPU:
        # The analysis transform runs in float32, whose rounding depends on the kernels: on another
        # kernel set a latent may round the other way, so the streams differ; the file still decodes
        # (every frame's latent check passes) at about the same size.
        assert len(decode_video(reencoded, codec).frames) == len(header.records)
        assert abs(len(reencoded) - len(data)) <= 0.1 * len(data)
        return
    assert reencoded[new_offset:] == data[offset:]
    unchecked = replace(new_header, records=tuple(replace(r, latent_check=None) for r in new_header.records))
    assert pack_video(unchecked, frames) == data
    decode_video(reencoded, codec)  # the golden latents pass the new file's checks



def test_every_older_model_format_and_container_version_has_a_golden_file():
    versions = {read_metadata(GOLDEN / record["model"])["format_version"] for record in MANIFEST.values()}
    assert versions == set(READABLE_VERSIONS) - {FORMAT_VERSION}
    containers = {(GOLDEN / name).read_bytes()[4] for name in MANIFEST}
    # The newest model format's golden file is in today's container.
    assert containers - {container.FORMAT_VERSION} == set(container.READABLE_VERSIONS) - {container.FORMAT_VERSION}
    videos = {(GOLDEN / name).read_bytes()[4] for name in VIDEO_MANIFEST}
    assert videos == set(READABLE_VIDEO_VERSIONS) - {VIDEO_FORMAT_VERSION}
