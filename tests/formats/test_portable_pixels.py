"""The same pixels on every CPU: files decode through the float64 synthesis unless they carry the
fast-decoding flag (container version 4, video container version 2), which the encoder sets only
when asked (``--fast-decode``)."""

import hashlib
import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from codeclab.codecs import stem
from codeclab.data.video import Clip
from codeclab.errors import CodecLabError
from codeclab.formats import container
from codeclab.formats.file_coding import to_uint8
from codeclab.formats.image_file import decode_image, decode_image_y, encode_image
from codeclab.formats.model_file import export_model, load_model
from codeclab.formats.video_container import FrameRecord, VideoHeader, pack_video, unpack_video
from codeclab.formats.video_file import decode_video, encode_video
from tests.conftest import ROOT

SHIPPED = ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors"
HEADER = container.Header("mbt2018-mean", bytes(8), 64, 48, ())


@pytest.mark.parametrize("level, tile", [(None, None), (3, None), (None, 128), (5, 256)])
def test_the_fast_decoding_flag_round_trips_in_container_version_4(level, tile):
    fast = container.Header("mbt2018-mean", bytes(8), 64, 48, (), level=level, tile=tile, fast_decode=True)
    header, streams = container.unpack(container.pack(fast, [b"ab", b"c"]))
    assert (header.version, header.fast_decode, header.level, header.tile, streams) == (4, True, level, tile, [b"ab", b"c"])
    portable = container.unpack(container.pack(container.Header("m", bytes(8), 64, 48, (), level=level, tile=tile), [b"x"]))[0]
    assert not portable.fast_decode and portable.version == (3 if tile else 2 if level is not None else 1)


def test_a_version_3_file_with_the_fast_flag_is_refused():
    data = bytearray(container.pack(container.Header("m", bytes(8), 64, 48, (), tile=128, fast_decode=True), [b"x"]))
    flags_at = 4 + 1 + 1 + 1 + 8 + 1 + 1 + 1 + 1 + 1  # magic, version, id length, id, hash, coder, 64, 48, depth, mode
    assert data[4] == 4 and data[flags_at] == 2 | 4
    data[4] = 3
    with pytest.raises(CodecLabError, match="unknown header flags 0x6"):
        container.unpack(bytes(data))


def test_the_video_container_writes_version_2_only_for_fast_decoding():
    def header(fast):
        return VideoHeader("stem", bytes(8), 64, 48, Fraction(25), "limited", "bt601", True, 12, 1,
                           (FrameRecord("I", (1,), 0),), fast_decode=fast)

    for fast in (False, True):
        data = pack_video(header(fast), [[b"x"]])
        unpacked, _ = unpack_video(data)
        assert (data[4], unpacked.fast_decode, unpacked.describe()["format_version"]) == (1 + fast, fast, 1 + fast)


def test_files_decode_through_the_float64_synthesis_unless_they_allow_the_fast_one(photo):
    codec = load_model(SHIPPED)
    image = photo[:64, :96]
    for fast in (False, True):
        data = encode_image(codec, image, level=10, fast_decode=fast)
        (y_hat,) = decode_image_y(data, codec)
        synthesis = codec.synthesis(y_hat) if fast else codec.portable_synthesis()(y_hat)
        assert synthesis.dtype == (torch.float32 if fast else torch.float64)
        assert np.array_equal(decode_image(data, codec), to_uint8(synthesis)[:64, :96])


@pytest.fixture(scope="module")
def clip_and_image_files(tmp_path_factory):
    """A 256x256 photograph coded by the shipped model, and a 6-frame clip coded by a small STEM."""
    import skimage.data

    folder = tmp_path_factory.mktemp("portable")
    photo = np.ascontiguousarray(skimage.data.astronaut()[:256, 128:384])
    (folder / "image.clab").write_bytes(encode_image(load_model(SHIPPED), photo, level=40))
    torch.manual_seed(0)
    export_model(stem(N=32, M=48, rate_levels=4, scale_table_levels=256, spatial="checkerboard"), folder / "stem.safetensors")
    frames = [np.ascontiguousarray(np.roll(photo[:64, :96], 3 * t, axis=1)) for t in range(6)]
    clip = Clip(frames, Fraction(25), "limited", "bt601", "y4m")
    (folder / "clip.clav").write_bytes(encode_video(load_model(folder / "stem.safetensors"), clip, intra_period=3, level=2).data)
    return folder


_DECODE = """
import hashlib, json, sys
from pathlib import Path
from codeclab.formats.image_file import decode_image
from codeclab.formats.model_file import load_model
from codeclab.formats.video_file import decode_video
folder = Path(sys.argv[1])
image = decode_image((folder / "image.clab").read_bytes(), load_model(sys.argv[2]))
clip = decode_video((folder / "clip.clav").read_bytes(), load_model(folder / "stem.safetensors"))
print(json.dumps([hashlib.sha256(image.tobytes()).hexdigest(), hashlib.sha256(b"".join(f.tobytes() for f in clip.frames)).hexdigest()]))
"""


def test_an_image_and_a_stem_clip_decode_to_identical_pixels_on_every_kernel_set_and_thread_count(clip_and_image_files):
    """Separate processes, as a machine with other kernels would run: oneDNN limited to AVX2 and to
    SSE4.1, ATen's portable kernels, one thread (the fast path differs between some of these;
    benchmarks/portable_pixels.py runs kodim01, a 10-frame real clip and 2 threads too)."""
    variants = [{}, {"DNNL_MAX_CPU_ISA": "AVX2"}, {"DNNL_MAX_CPU_ISA": "SSE41"}, {"ATEN_CPU_CAPABILITY": "default"},
                {"OMP_NUM_THREADS": "1"}]
    processes = [subprocess.Popen([sys.executable, "-c", _DECODE, str(clip_and_image_files), str(SHIPPED)], cwd=ROOT, text=True,
                                  env={**os.environ, **variant, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for variant in variants]  # side by side: the suite's wall time
    hashes = []
    for proc in processes:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        hashes.append(tuple(json.loads(out.splitlines()[-1])))
    assert len(set(hashes)) == 1, dict(zip(map(str, variants), hashes))
    here = decode_image((clip_and_image_files / "image.clab").read_bytes(), load_model(SHIPPED))
    assert hashlib.sha256(here.tobytes()).hexdigest() == hashes[0][0]
    clip = decode_video((clip_and_image_files / "clip.clav").read_bytes(), load_model(clip_and_image_files / "stem.safetensors"))
    assert len(clip.frames) == 6
