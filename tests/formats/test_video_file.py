"""Video files: exact latent round trips through real files, seeking, the container's checks, the
CLI (Y4M and PNG folders in and out), and Y4M/MP4 reading."""

import json
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from codeclab.codecs import mbt2018_mean, stem
from codeclab.data.colour import rgb_to_yuv420
from codeclab.data.video import Clip, VideoStream, open_video, read_video, write_video, y4m_bytes
from codeclab.entropy_models import integer
from codeclab.entropy_models.integer import UNCALIBRATED, Int8ConvMixin, calibrate_int8_inputs
from codeclab.errors import CodecLabError
from codeclab.coding import get_coder
from codeclab.formats.file_coding import codec_input, to_uint8
from codeclab.formats.model_file import export_model, load_model, weights_sha256
from codeclab.formats.video_file import decode_frames, decode_video, encode_video, frame_types, unpack_video
from tests.conftest import ROOT, run_main


def _clip(frames=5, height=50, width=70, seed=0) -> Clip:
    """A small moving pattern (odd size) with a 50 fps Y4M description."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height + 8, width + 8 * frames, 3)).astype(np.uint8)
    return Clip([np.ascontiguousarray(base[4:4 + height, 3 * t : 3 * t + width]) for t in range(frames)], Fraction(50), "limited",
                "bt601", "y4m")


@pytest.fixture(scope="module")
def stem_model(tmp_path_factory):
    torch.manual_seed(0)
    codec = stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard")
    path = tmp_path_factory.mktemp("stem") / "stem.safetensors"
    export_model(codec, path)
    return path


def test_frame_types():
    assert "".join(frame_types(7, 3)) == "IPPIPPI"
    assert "".join(frame_types(4, -1)) == "IPPP" == "".join(frame_types(4, 0))
    assert "".join(frame_types(3, 1)) == "III"


def test_decoded_latents_equal_the_encoders_through_a_real_file(stem_model):
    codec = load_model(stem_model)
    clip = _clip()
    encoded = encode_video(codec, clip, intra_period=3, level=2, keep_latents=True)
    assert encoded.kinds == list("IPPIP") and len(encoded.data) > sum(encoded.frame_bytes)
    decoded = decode_video(encoded.data, load_model(stem_model))
    assert len(decoded.frames) == 5 and decoded.fps == 50 and decoded.colour_range == "limited"
    for frame, latent in zip(decoded.frames, encoded.latents):
        assert np.array_equal(frame, to_uint8(codec.portable_synthesis()(latent))[:50, :70])
    header, _ = unpack_video(encoded.data)
    assert [r.kind for r in header.records] == list("IPPIP") and header.level == 2 and header.intra_period == 3
    assert [sum(r.stream_lengths) for r in header.records] == encoded.frame_bytes


def test_decoding_can_start_at_any_frame(stem_model):
    codec = load_model(stem_model)
    data = encode_video(codec, _clip(), intra_period=3, level=1).data
    everything = decode_video(data, codec).frames
    for start, stop in ((3, 5), (4, 5), (1, 3)):
        part = decode_video(data, codec, start, stop).frames
        assert len(part) == stop - start and all(np.array_equal(a, b) for a, b in zip(part, everything[start:stop]))
    with pytest.raises(CodecLabError, match="not in a file of 5 frames"):
        decode_video(data, codec, 5, 6)


def test_damaged_files_get_one_line_errors(stem_model):
    codec = load_model(stem_model)
    data = encode_video(codec, _clip(frames=3), intra_period=-1, level=0).data
    with pytest.raises(CodecLabError, match="truncated file"):
        decode_video(data[:-5], codec)
    flipped = bytearray(data)
    flipped[-3] ^= 0x10
    with pytest.raises(CodecLabError, match="frame 2 checksum mismatch"):
        decode_video(bytes(flipped), codec)
    header = bytearray(data)
    header[12] ^= 0x01  # inside the header: its CRC catches it
    with pytest.raises(CodecLabError, match="checksum|corrupt|wrong model"):
        decode_video(bytes(header), codec)
    with pytest.raises(CodecLabError, match="not a CodecLab video"):
        unpack_video(b"CLAB" + data[4:])


def test_a_file_starting_with_a_p_frame_is_refused(stem_model):
    from codeclab.formats import video_file

    codec = load_model(stem_model)
    data = encode_video(codec, _clip(frames=2), intra_period=-1, level=0).data
    header, offset = unpack_video(data)
    swapped = video_file.VideoHeader(**{**header.__dict__, "records": tuple(
        video_file.FrameRecord("P" if i == 0 else r.kind, r.stream_lengths, r.crc) for i, r in enumerate(header.records))})
    frames, pos = [], offset
    for record in header.records:
        streams = []
        for length in record.stream_lengths:
            streams.append(data[pos : pos + length])
            pos += length
        frames.append(streams)
    with pytest.raises(CodecLabError, match="first frame is a P-frame"):
        decode_video(video_file.pack_video(swapped, frames), codec)


def test_the_wrong_model_and_image_models_are_refused(stem_model, tmp_path):
    codec = load_model(stem_model)
    data = encode_video(codec, _clip(frames=2), intra_period=2, level=0).data
    torch.manual_seed(5)
    other = tmp_path / "other.safetensors"
    export_model(stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard"), other)
    with pytest.raises(CodecLabError, match="wrong model"):
        decode_video(data, load_model(other))
    image_path = tmp_path / "image.safetensors"
    export_model(mbt2018_mean(8, 12), image_path)
    image_codec = load_model(image_path)
    with pytest.raises(CodecLabError, match="image codec: it codes video all-intra only"):
        encode_video(image_codec, _clip(frames=2), intra_period=2)
    all_intra = encode_video(image_codec, _clip(frames=2), intra_period=1)
    assert len(decode_video(all_intra.data, image_codec).frames) == 2


def test_cli_round_trips_y4m_and_png_folders(stem_model, tmp_path):
    clip = _clip(frames=3)
    source = tmp_path / "clip.y4m"
    source.write_bytes(y4m_bytes([rgb_to_yuv420(f) for f in clip.frames], Fraction(50), "limited"))
    coded = tmp_path / "clip.clab"
    out = run_main("encode", source, "-m", stem_model, "-o", coded, "--intra-period", "2", "--level", "3", check=True)
    assert "3 frames of 70x50 (2 I, 1 P, level 3 of 4)" in out.stdout
    info = run_main("info", coded, check=True).stdout
    assert '"type": "P"' in info and '"frame_count": 3' in info and '"fps": "50:1"' in info
    decoded = tmp_path / "out.y4m"
    run_main("decode", coded, "-m", stem_model, "-o", decoded, check=True)
    assert decoded.read_bytes().split(b"\n", 1)[0] == source.read_bytes().split(b"\n", 1)[0]  # size, rate, range
    frames = tmp_path / "frames"
    run_main("decode", coded, "-m", stem_model, "-o", frames, check=True)
    png = read_video(frames)
    y4m = read_video(decoded)
    assert len(png.frames) == len(y4m.frames) == 3 and png.frames[0].shape == (50, 70, 3)
    # The Y4M holds the PNG frames' 4:2:0 samples exactly.
    assert decoded.read_bytes() == y4m_bytes([rgb_to_yuv420(f) for f in png.frames], Fraction(50), "limited")
    refused = run_main("decode", coded, "-m", stem_model, "-o", frames)
    assert refused.returncode == 1 and "exists and is not empty" in refused.stderr and refused.stderr.count("\n") == 1


def test_video_encode_defaults_to_the_middle_quality_and_suggests_only_video_flags(stem_model, tmp_path, capsys):
    from codeclab.cli import main

    clip = _clip(frames=2)
    source = tmp_path / "clip.y4m"
    source.write_bytes(y4m_bytes([rgb_to_yuv420(f) for f in clip.frames], Fraction(50), "limited"))
    assert main(["encode", str(source), "-m", str(stem_model), "-o", str(tmp_path / "a.clab")]) == 0
    assert "(1 I, 1 P, level 2 of 4, the default --quality 0.5)" in capsys.readouterr().out
    assert unpack_video((tmp_path / "a.clab").read_bytes())[0].level == 2
    assert main(["encode", str(source), "-m", str(stem_model), "-o", str(tmp_path / "b.clab"), "--target-bpp", "1"]) == 1
    assert capsys.readouterr().err == "codeclab: error: --target-bpp is for images; choose a video's rate with --quality or --level\n"
    with pytest.raises(CodecLabError, match=r"choose a rate with --quality or --level$"):  # no image-only flag
        encode_video(load_model(stem_model), clip)


def test_bad_videos_are_one_line_errors(tmp_path):
    good = y4m_bytes([rgb_to_yuv420(f) for f in _clip(frames=2).frames], Fraction(25), "limited")
    cases = {
        "truncated.y4m": (good[:-100], "truncated Y4M file"),
        "c444.y4m": (good.replace(b"C420jpeg", b"C444"), "unsupported Y4M colour format C444"),
        "huge.y4m": (b"YUV4MPEG2 W100000 H100000 F25:1 C420jpeg\nFRAME\n", "over the limit"),
        "noframe.y4m": (good.replace(b"FRAME", b"FRAMX", 1), "no FRAME marker"),
        "text.y4m": (b"hello\n", "not a Y4M file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CodecLabError, match=message):
            read_video(tmp_path / name)
    proc = run_main("encode", tmp_path / "truncated.y4m", "-m", tmp_path / "none.safetensors", "-o", tmp_path / "x.clab")
    assert proc.returncode == 1 and proc.stderr.startswith("codeclab: error: truncated Y4M") and not (tmp_path / "x.clab").exists()


def test_y4m_keeps_samples_and_range(tmp_path):
    clip = _clip(frames=2, height=17, width=33)
    planes = [rgb_to_yuv420(f, "bt709", "full") for f in clip.frames]
    path = tmp_path / "odd.y4m"
    path.write_bytes(y4m_bytes(planes, Fraction(30000, 1001), "full"))
    read = read_video(path, matrix="bt709")
    assert (read.colour_range, read.fps, len(read.frames), read.frames[0].shape) == ("full", Fraction(30000, 1001), 2, (17, 33, 3))
    assert read.extra == {} and read.source == "y4m"


def test_mp4_through_ffmpeg(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    source = tmp_path / "clip.y4m"
    # Smooth frames: chroma siting and upsampling differ between ffmpeg and CodecLab, not the colours.
    rows, cols = np.mgrid[0:48, 0:64]
    frames = [np.stack([(rows * 4 + t * 8) % 200 + 20, cols * 3 + 20, 0 * rows + 120 + t], -1).astype(np.uint8) for t in range(4)]
    source.write_bytes(y4m_bytes([rgb_to_yuv420(f) for f in frames], Fraction(25), "limited"))
    mp4 = tmp_path / "clip.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(source), "-c:v", "libx264", "-qp", "0",
                    str(mp4)], check=True)
    clip = read_video(mp4)
    assert len(clip.frames) == 4 and clip.frames[0].shape == (48, 64, 3) and clip.fps == 25
    assert np.abs(clip.frames[0].astype(int) - read_video(source).frames[0].astype(int)).mean() < 2
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(CodecLabError, match="cannot read video"):
        read_video(tmp_path / "broken.mp4")


def test_encoding_reads_each_frame_only_when_it_is_coded(stem_model, tmp_path):
    """Frame k is read only after frame k - 1 was coded, and the bytes equal coding the whole clip."""
    codec, clip = load_model(stem_model), _clip(frames=7)
    coded = []
    for owner, name in ((codec.entropy_model, "compress"), (codec, "compress_y_p")):
        method = getattr(owner, name)
        setattr(owner, name, lambda *args, _method=method, **kwargs: coded.append(1) or _method(*args, **kwargs))

    def frames():
        for index, frame in enumerate(clip.frames):
            assert len(coded) == index, f"frame {index} read with {len(coded)} frames coded"
            yield frame

    stream = VideoStream(frames(), clip.width, clip.height, clip.count, clip.fps, clip.colour_range, clip.matrix, clip.source)
    assert encode_video(codec, stream, intra_period=3, level=2).data == encode_video(load_model(stem_model), clip, 3, 2).data
    source = tmp_path / "clip.y4m"
    source.write_bytes(y4m_bytes([rgb_to_yuv420(f) for f in clip.frames], Fraction(50), "limited"))
    from_file = encode_video(codec, open_video(source), 3, 2)
    assert from_file.data == encode_video(codec, read_video(source), 3, 2).data and from_file.latents == []


def test_the_frame_size_is_checked_before_any_frame_is_read(stem_model):
    def unreadable():
        raise AssertionError("a frame was read")
        yield

    with pytest.raises(CodecLabError, match="over the per-frame limit"):
        encode_video(load_model(stem_model), VideoStream(unreadable(), 4096, 4096, 1), level=0)


@pytest.mark.parametrize("output", ["out.y4m", "frames"])
def test_decoding_writes_each_frame_before_decoding_the_next(stem_model, tmp_path, monkeypatch, output):
    from codeclab.data import video

    codec = load_model(stem_model)
    data = encode_video(codec, _clip(frames=5), intra_period=3, level=1).data
    expected = decode_video(data, codec)
    synthesised, written = [], []
    synthesis, convert = codec.portable_synthesis(), video.rgb_to_yuv420
    monkeypatch.setattr(codec, "portable_synthesis", lambda: lambda y: synthesised.append(1) or synthesis(y))

    def write(frame, *args):
        written.append(1)
        assert len(synthesised) == len(written), "a frame was decoded before the previous one was written"
        return convert(frame, *args)

    monkeypatch.setattr(video, "rgb_to_yuv420", write)
    monkeypatch.setattr(video.Image, "fromarray", lambda frame, _original=video.Image.fromarray: write(frame) and _original(frame))
    write_video(tmp_path / output, decode_frames(data, codec))
    assert len(written) == 5
    monkeypatch.undo()
    write_video(tmp_path / "whole" / output, expected)  # the same frames written from memory
    streamed, whole = read_video(tmp_path / output).frames, read_video(tmp_path / "whole" / output).frames
    assert len(streamed) == 5 and all(np.array_equal(a, b) for a, b in zip(streamed, whole))


_SLOW_DECODE = """import sys, time
import codeclab.formats.file_coding as file_coding
convert = file_coding.to_uint8
file_coding.to_uint8 = lambda x: (time.sleep(0.3), convert(x))[1]
from codeclab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, output", [(signal.SIGTERM, "out.y4m"), (signal.SIGHUP, "frames")])
def test_a_termination_signal_removes_the_partly_written_output(stem_model, tmp_path, signum, output):
    coded = tmp_path / "clip.clab"
    coded.write_bytes(encode_video(load_model(stem_model), _clip(frames=20), intra_period=-1, level=0).data)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_DECODE, "decode", str(coded), "-m", str(stem_model), "-o",
                             str(tmp_path / output)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(f".{output}.") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a frame or two written
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and err == f"codeclab: error: stopped by {signal.Signals(signum).name}\n", err
    assert [p.name for p in tmp_path.iterdir()] == ["clip.clab"]


def test_info_lists_a_page_of_frames_of_a_long_video(tmp_path, capsys):
    from codeclab.cli import main
    from codeclab.formats.video_container import LISTED_FRAMES, FrameRecord, VideoHeader, pack_video

    count = LISTED_FRAMES + 500
    header = VideoHeader("stem", bytes(8), 64, 48, Fraction(25), "limited", "bt601", True, 0, None, (FrameRecord("I", (), 0),) * count)
    (tmp_path / "long.clab").write_bytes(pack_video(header, [[]] * count))
    assert main(["info", str(tmp_path / "long.clab")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["frame_count"], len(info["frames"]), info["frames_not_listed"]) == (count, LISTED_FRAMES, 500)


def test_frames_mean_the_same_range_in_encode_and_decode(stem_model, tmp_path, capsys):
    from codeclab.cli import main

    source = tmp_path / "in.y4m"
    write_video(source, _clip(frames=6))
    frames = read_video(source).frames
    codec = load_model(stem_model)

    def encoded(selection):
        clip = read_video(source)
        return encode_video(codec, Clip(selection, clip.fps, clip.colour_range, clip.matrix, "y4m"), intra_period=12, level=1).data

    for text, selection in (("2:5", frames[2:5]), ("3", frames[:3]), ("4:", frames[4:]), (":2", frames[:2])):
        out = tmp_path / f"{text.replace(':', '_')}.clab"
        assert main(["encode", str(source), "-m", str(stem_model), "-o", str(out), "--frames", text, "--level", "1", "--quiet"]) == 0
        assert out.read_bytes() == encoded(selection), text
    whole = tmp_path / "whole.clab"
    whole.write_bytes(encoded(frames))
    for text, count in (("2", 2), ("1:3", 2), ("4:", 2)):
        assert main(["decode", str(whole), "-m", str(stem_model), "-o", str(tmp_path / f"d{count}{text[0]}.y4m"), "--frames", text,
                     "--quiet"]) == 0
        assert len(read_video(tmp_path / f"d{count}{text[0]}.y4m").frames) == count
    capsys.readouterr()
    for command in ("encode", "decode"):
        for text in ("-1", "0", "4:2", "3:3", "a", "1:2:3"):
            target = [str(source), "-o", str(tmp_path / "bad.clab")] if command == "encode" else [str(whole), "-o", str(tmp_path / "bad.y4m")]
            assert main([command, *target, "-m", str(stem_model), "--frames", text, "--quiet"]) == 1
            err = capsys.readouterr().err
            assert err.startswith("codeclab: error: --frames takes N (the first N frames) or START:STOP") and err.count("\n") == 1
    assert not (tmp_path / "bad.clab").exists() and not (tmp_path / "bad.y4m").exists()


def test_adaptive_intra_keeps_the_smaller_coding_of_each_frame_and_decodes_exactly(stem_model):
    """``adaptive_intra``: each scheduled P-frame is coded both ways given the reference the
    decoder will have, and the I-frame is kept only where its streams are smaller; the file decodes
    to the encoder's latents. (This untrained model's P-frames tie with its I-frames at level 1, and
    at level 3 cost less than I-frames after an I-frame and more after a P-frame, so both choices
    are exercised.)"""
    codec = load_model(stem_model)
    clip = _clip(frames=4)
    for level, expected in ((1, "IPPP"), (3, "IPIP")):
        encoded = encode_video(codec, clip, intra_period=-1, level=level, keep_latents=True, adaptive_intra=True)
        assert "".join(encoded.kinds) == expected
        reference = None
        for t, (frame, kind, nbytes, latent) in enumerate(zip(clip.frames, encoded.kinds, encoded.frame_bytes, encoded.latents)):
            y = codec.analysis(codec_input(frame, codec.downsampling))
            intra = codec.compress_y(y, (56, 72), get_coder(), level)  # the padded frame size
            intra_bytes = sum(map(len, intra.strings))
            p_bytes = intra_bytes
            if t > 0:
                p_streams, p_latent = codec.compress_y_p(y, reference, get_coder(), level)
                p_bytes = sum(map(len, p_streams))
            assert nbytes == min(intra_bytes, p_bytes) and (kind == "I") == (t == 0 or intra_bytes < p_bytes)
            assert torch.equal(latent, intra.y_hat if kind == "I" else p_latent)
            reference = latent
        header, _ = unpack_video(encoded.data)
        assert [r.kind for r in header.records] == encoded.kinds and header.intra_period == 0
        decoded = decode_video(encoded.data, load_model(stem_model))
        for frame, latent in zip(decoded.frames, encoded.latents):
            assert np.array_equal(frame, to_uint8(codec.portable_synthesis()(latent))[:50, :70])


def test_adaptive_intra_from_the_cli_and_refused_for_image_models(stem_model, tmp_path):
    clip = _clip(frames=3)
    source = tmp_path / "clip.y4m"
    source.write_bytes(y4m_bytes([rgb_to_yuv420(f) for f in clip.frames], Fraction(50), "limited"))
    out = run_main("encode", source, "-m", stem_model, "-o", tmp_path / "a.clab", "--intra-period", "-1", "--adaptive-intra",
                   "--level", "1", check=True)
    assert "3 frames of 70x50" in out.stdout
    image_model = tmp_path / "image.safetensors"
    export_model(mbt2018_mean(N=8, M=12), image_model)
    refused = run_main("encode", source, "-m", image_model, "-o", tmp_path / "b.clab", "--intra-period", "-1", "--adaptive-intra")
    assert refused.returncode == 1 and "codes video all-intra only" in refused.stderr and not (tmp_path / "b.clab").exists()


def test_int8_p_frame_networks_code_exactly_through_a_real_file(tmp_path, monkeypatch):
    """``temporal_arithmetic="int8"``: the P-frame networks are exact 8-bit layers (int8 products,
    int32 sums), calibrated on data; the file decodes to the encoder's latents, its P-frames'
    integers agree with the float64 sums, and a file whose layers were never calibrated is refused."""
    torch.manual_seed(0)
    codec = stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard", temporal_arithmetic="int8")
    model = codec.temporal_model
    assert model.arithmetic == "int8" and codec.entropy_model.arithmetic == "float" and model.portable
    layers = [m for m in model.modules() if isinstance(m, Int8ConvMixin)]
    assert len(layers) == 10  # hyper-synthesis 3, temporal prior 3, checkerboard context 1, entropy parameters 3
    # The layers reading quantised latents (the reference, the decoded anchors) take 15-bit inputs.
    assert [m.input_limit for m in (model.temporal_prior[0], model.context.conv)] == [16383, 16383]
    assert sum(m.input_limit == 127 for m in layers) == 8
    uncalibrated = tmp_path / "uncalibrated.safetensors"
    with pytest.raises(CodecLabError, match="no calibrated input grid"):
        export_model(codec, uncalibrated)
    assert not uncalibrated.exists()
    model.train()
    y, reference = torch.randn(2, 12, 8, 8) * 4, torch.randn(2, 12, 8, 8) * 4
    assert calibrate_int8_inputs(model, lambda: model(y, reference, torch.tensor([1, 2]))) == 10
    path = tmp_path / "stem_int8.safetensors"
    export_model(codec.eval(), path)
    with safe_open(str(path), framework="pt") as handle:  # 8-bit weights are stored as int8
        assert handle.get_slice("temporal_model.temporal_prior.0.weight").get_dtype() == "I8"
        assert handle.get_slice("temporal_model.h_a.0.weight").get_dtype() == "F32"
    loaded = load_model(path)
    clip = _clip(frames=4)
    encoded = encode_video(loaded, clip, intra_period=-1, level=2, keep_latents=True)
    decoded = decode_video(encoded.data, load_model(path))
    for frame, latent in zip(decoded.frames, encoded.latents):
        assert np.array_equal(frame, to_uint8(loaded.portable_synthesis()(latent))[:50, :70])
    float64_sums = load_model(path)  # the same file decoded with float64 sums instead of the int8 kernel
    for layer in (m for m in float64_sums.modules() if isinstance(m, Int8ConvMixin)):
        layer._int8_kernel_applies = lambda: False
    assert np.array_equal(decode_video(encoded.data, float64_sums).frames, decoded.frames)
    other_kernel = "torch" if integer.int8_kernel() == "native" else "native"  # torch._int_mm or CodecLab's
    monkeypatch.setattr(integer, "int8_kernel", lambda: other_kernel)
    assert np.array_equal(decode_video(encoded.data, load_model(path)).frames, decoded.frames)
    # A hostile file (its hash made consistent) whose layer never had a grid: refused on loading.
    with safe_open(str(path), framework="pt") as handle:
        tensors, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    tensors["temporal_model.temporal_prior.0.input_exponent"].fill_(UNCALIBRATED)
    save_file(tensors, uncalibrated, metadata={**metadata, "weights_sha256": weights_sha256(tensors)})
    with pytest.raises(CodecLabError, match="temporal_prior.0 has no calibrated input grid"):
        load_model(uncalibrated)
