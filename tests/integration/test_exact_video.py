"""P-frames decode exactly across machine configurations: a video encoded in one process (1 thread,
NCHW, float32 transforms, oneDNN on, float64 integer backend) decodes in another (2 threads,
channels-last, bf16 transforms, oneDNN off, int64 backend) to the encoder's latents, bit for bit;
with 15-bit and with 8-bit P-frame networks (int8 products on both sides; with oneDNN off the
decoder's always come from CodecLab's kernel, so on an AVX-512 VNNI CPU the encoder's
``torch._int_mm`` integers are checked against it across processes)."""

import os
import subprocess
import sys

import numpy as np
import torch

from codeclab.codecs import stem
from codeclab.entropy_models.integer import calibrate_int8_inputs
from codeclab.formats.model_file import export_model
from tests.conftest import ROOT

SCRIPT = """
import sys, numpy as np, torch
from fractions import Fraction
torch.backends.mkldnn.enabled = sys.argv[2] == "on"
from codeclab.data.video import Clip
from codeclab.formats.model_file import load_model
from codeclab.formats.video_file import decode_video_y, encode_video
for model in sys.argv[3:]:  # each model's file and latents are MODEL.clab and MODEL.<encode|decode>.npy
    codec = load_model(model)
    if sys.argv[1] == "encode":
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (70, 120, 3)).astype(np.uint8)
        clip = Clip([np.ascontiguousarray(base[3 * t % 5 : 3 * t % 5 + 64, 2 * t : 2 * t + 96]) for t in range(5)], Fraction(25))
        encoded = encode_video(codec, clip, intra_period=3, level=2, keep_latents=True)
        open(model + ".clab", "wb").write(encoded.data)
        np.save(model + ".encode.npy", torch.cat(encoded.latents).numpy())
    else:
        _, latents = decode_video_y(open(model + ".clab", "rb").read(), codec)
        np.save(model + ".decode.npy", torch.cat(list(latents)).numpy())
"""


def _run(env: dict, *args) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _calibrate(temporal) -> None:
    y, reference = torch.randn(2, 12, 8, 8) * 4, torch.randn(2, 12, 8, 8) * 4
    calibrate_int8_inputs(temporal, lambda: temporal(y, reference, torch.tensor([1, 2])))


def test_p_frames_decode_identically_under_another_configuration(tmp_path):
    torch.manual_seed(0)
    models = []
    for temporal_arithmetic in (None, "int8"):  # 15-bit or 8-bit P-frame networks
        codec = stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard",
                     temporal_arithmetic=temporal_arithmetic)
        if temporal_arithmetic:
            _calibrate(codec.temporal_model.train())
        models.append(tmp_path / f"stem_{temporal_arithmetic or 'integer'}.safetensors")
        export_model(codec.eval(), models[-1])
    base = {k: v for k, v in os.environ.items() if not k.startswith("CODECLAB_")}
    encoder_env = dict(base, OMP_NUM_THREADS="1", CODECLAB_LAYOUT="nchw", CODECLAB_TRANSFORMS="fp32",
                       CODECLAB_INTEGER_BACKEND="float64")
    decoder_env = dict(base, OMP_NUM_THREADS="2", CODECLAB_LAYOUT="channels_last", CODECLAB_TRANSFORMS="bf16",
                       CODECLAB_INTEGER_BACKEND="int64")
    _run(encoder_env, "encode", "on", *models)
    _run(decoder_env, "decode", "off", *models)
    for model in models:
        encoder, decoder = np.load(f"{model}.encode.npy"), np.load(f"{model}.decode.npy")
        assert encoder.shape == decoder.shape == (5, 12, 4, 8)  # 64x96 frames padded to 64x128
        assert np.array_equal(encoder, decoder), model.name
