"""The latent check (image container version 5, video container version 3): damage under a
recomputed CRC, and edited header fields, are refused instead of decoding to other pictures; the
same damage in an older file, without the check, decodes silently (the negative control)."""

import random
import struct
import zlib
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from codeclab.codecs import stem
from codeclab.coding import get_coder
from codeclab.data.video import Clip
from codeclab.errors import CodecLabError
from codeclab.formats import container
from codeclab.formats.file_coding import latent_crc
from codeclab.formats.image_file import decode_image, decode_image_y, encode_image
from codeclab.formats.model_file import export_model, load_model
from codeclab.formats.video_container import frame_streams, pack_video, unpack_video
from codeclab.formats.video_file import decode_video, encode_video
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
CHECK_FAILS = "latent check"


@pytest.fixture(scope="module")
def coded():
    """A file coded with compressai's rANS, which cannot tell where a stream ended: the end-of-stream
    check passes damaged streams, so the latent check is the one that must catch them."""
    codec = load_model(GOLDEN / "mbt2018-mean.safetensors")
    image = np.asarray(Image.open(GOLDEN / "astronaut_97x131.png").convert("RGB"))
    data = encode_image(codec, image, coder=get_coder("compressai"))
    return codec, data, decode_image(data, codec)


def test_the_check_is_a_crc_of_the_header_fields_and_of_each_tile_latent():
    header = container.Header("m", bytes(8), 64, 48, (), level=3, tile=128, latent_check=0x01020304)
    data = container.pack(header, [b"ab", b"c"])
    flags_at = 4 + 1 + 1 + 1 + 8 + 1 + 1 + 1 + 1 + 1  # magic, version, id length, id, hash, coder, 64, 48, depth, mode
    check_at = flags_at + 1 + 1 + 2  # after the flags, level 3 (one byte) and tile 128 (two bytes)
    assert data[4] == 5 and data[flags_at] == 1 | 2 and data[check_at : check_at + 4] == bytes([4, 3, 2, 1])
    unpacked, streams = container.unpack(data)
    assert unpacked == replace(header, stream_lengths=(2, 1)) and streams == [b"ab", b"c"]
    # The header's bytes up to the tile size (with a zero check), then each tile's CRC, in order.
    fields = data[:check_at]
    assert container.latent_check(unpacked, [7, 9]) == container.latent_check(replace(unpacked, latent_check=5), [7, 9])
    assert container.latent_check(unpacked, [7, 9]) == zlib.crc32(fields + struct.pack("<II", 7, 9))
    assert container.latent_check(unpacked, [9, 7]) != container.latent_check(unpacked, [7, 9])


def test_latent_crc_reads_float32_bytes_with_negative_zero_as_zero():
    assert latent_crc(torch.tensor([-0.0, 1.5])) == latent_crc(torch.tensor([0.0, 1.5], dtype=torch.float64))
    assert latent_crc(torch.tensor([0.0, 1.5])) != latent_crc(torch.tensor([0.0, 2.5]))


def test_every_file_carries_the_check_and_the_decoder_verifies_it(coded):
    codec, data, _ = coded
    header, streams = container.unpack(data)
    (y_hat,) = decode_image_y(data, codec)
    assert header.version == 5 and header.latent_check == container.latent_check(header, [latent_crc(y_hat)])
    forged = container.pack(replace(header, latent_check=header.latent_check ^ 1), streams)
    with pytest.raises(CodecLabError, match=CHECK_FAILS):
        decode_image(forged, codec)
    with pytest.raises(CodecLabError, match=CHECK_FAILS):
        decode_image_y(forged, codec)


@pytest.mark.parametrize("field, value", [("width", 130), ("height", 100), ("fast_decode", True)])
def test_an_edited_header_field_is_refused_where_an_old_file_decodes_another_picture(coded, field, value):
    codec, data, intact = coded
    header, streams = container.unpack(data)
    edited = replace(header, **{field: value})
    with pytest.raises(CodecLabError, match=CHECK_FAILS):
        decode_image(container.pack(edited, streams), codec)
    old = decode_image(container.pack(replace(edited, latent_check=None), streams), codec)  # version 1 or 4
    if field != "fast_decode":  # whose pixels differ only on some CPUs
        assert old.shape != intact.shape


def test_damaged_streams_under_a_recomputed_crc_never_decode_to_other_pixels(coded):
    """Bit flips in the streams, the CRC recomputed: with the check, each file is refused or
    decodes to the intact pixels; the same streams without it decode to other pixels for some."""
    codec, data, intact = coded
    header, streams = container.unpack(data)
    rng = random.Random(0)
    outcomes = {"refused by the check": 0, "refused earlier": 0, "same pixels": 0, "old file: other pixels": 0}
    for _ in range(20):
        damaged = [bytearray(s) for s in streams]
        target = damaged[rng.randrange(len(damaged))]
        target[rng.randrange(len(target))] ^= 1 << rng.randrange(8)
        damaged = [bytes(s) for s in damaged]
        try:
            decoded = decode_image(container.pack(header, damaged), codec)
        except CodecLabError as err:
            outcomes["refused by the check" if "latent check" in str(err) else "refused earlier"] += 1
        else:
            assert np.array_equal(decoded, intact)
            outcomes["same pixels"] += 1
            continue
        try:
            old = decode_image(container.pack(replace(header, latent_check=None), damaged), codec)
        except CodecLabError:
            continue
        outcomes["old file: other pixels"] += not np.array_equal(old, intact)
    assert outcomes["refused by the check"] >= 1 and outcomes["old file: other pixels"] >= 1, outcomes


def _clip(frames=4) -> Clip:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 60 + 3 * frames, 3)).astype(np.uint8)
    return Clip([np.ascontiguousarray(base[:, 3 * t : 3 * t + 60]) for t in range(frames)], Fraction(25), "limited", "bt601", "y4m")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("stem") / "stem.safetensors"
    export_model(stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard"), path)
    codec = load_model(path)
    return codec, encode_video(codec, _clip(), intra_period=2, level=2).data


def _frames(data: bytes) -> tuple:
    header, offset = unpack_video(data)
    return header, frame_streams(data, header, offset)


def test_every_video_frame_carries_a_check_of_the_sequence_and_its_latent(video):
    codec, data = video
    header, frames = _frames(data)
    assert header.version == 3 and data[4] == 3 and all(r.latent_check is not None for r in header.records)
    assert header.describe()["latent_checks"] is True
    assert pack_video(header, frames) == data
    assert len(decode_video(data, codec).frames) == 4


@pytest.mark.parametrize("edit", ["colour", "fps", "frame_count", "stream"])
def test_an_edited_or_damaged_video_is_refused_where_an_old_file_decodes(video, edit):
    codec, data = video
    header, frames = _frames(data)
    records = list(header.records)
    if edit == "colour":
        header = replace(header, colour_range="full")
    elif edit == "fps":
        header = replace(header, fps=Fraction(30))
    elif edit == "frame_count":  # the last frame dropped from the index and the payload
        records, frames = records[:-1], frames[:-1]
    else:  # damage under recomputed CRCs: a P-frame's y stream, first byte
        frames[1] = [bytes([frames[1][0][0] ^ 0x40]) + frames[1][0][1:], *frames[1][1:]]
    edited = replace(header, records=tuple(records))
    with pytest.raises(CodecLabError, match=CHECK_FAILS + "|corrupt stream"):
        decode_video(pack_video(edited, frames), codec)
    if edit != "stream":  # without the checks (version 1) the edit decodes
        old = replace(edited, records=tuple(replace(r, latent_check=None) for r in records))
        assert len(decode_video(pack_video(old, frames), codec).frames) == len(records)
