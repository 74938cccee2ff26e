"""Hostile files, huge images and user mistakes: one-line errors, no allocation from a lying
header, no garbage from a swapped coder, never an overwritten input (issue 14's cases)."""

import errno
import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codeclab.cli import main
from codeclab.errors import CodecLabError
from codeclab.formats import container
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
MODEL = GOLDEN / "mbt2018-mean.safetensors"


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code, err, message):
    assert code == 1 and err.startswith("codeclab: error: ") and err.count("\n") == 1, err
    assert message in err, err


def _rewrite(path, target, **changes):
    """The file at ``path`` with header fields changed and a correct checksum, written to ``target``."""
    header, streams = container.unpack(path.read_bytes())
    fields = {**header.__dict__, **changes}
    target.write_bytes(container.pack(container.Header(**fields), streams))
    return target


@pytest.mark.parametrize("name, height, width", [("mbt2018-mean", 1048576, 65536), ("walloc-bounded", 65536, 65536)])
def test_a_lying_header_is_refused_before_any_allocation(tmp_path, capsys, name, height, width):
    huge = _rewrite(GOLDEN / f"{name}.clab", tmp_path / "huge.clab", height=height, width=width)
    code, _, err = _run(capsys, "decode", huge, "-o", tmp_path / "out.png", "-m", GOLDEN / f"{name}.safetensors")
    _one_line_error(code, err, f"{width}x{height} = {height * width} pixels, over the limit of 268435456")
    assert not (tmp_path / "out.png").exists()


def test_the_pixel_limit_is_configurable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CODECLAB_MAX_PIXELS", "100")
    code, _, err = _run(capsys, "decode", GOLDEN / "mbt2018-mean.clab", "-o", tmp_path / "out.png", "-m", MODEL)
    _one_line_error(code, err, "over the limit of 100 (raise it with CODECLAB_MAX_PIXELS)")


@pytest.mark.parametrize("written_by, claimed", [("codeclab", "compressai"), ("compressai", "codeclab")])
def test_a_swapped_coder_byte_is_an_error_not_garbage(tmp_path, capsys, written_by, claimed):
    source = GOLDEN / ("mbt2018-mean.clab" if written_by == "codeclab" else "mbt2018-mean.compressai.clab")
    swapped = _rewrite(source, tmp_path / "swapped.clab", coder=claimed)
    code, _, err = _run(capsys, "decode", swapped, "-o", tmp_path / "out.png", "-m", MODEL)
    _one_line_error(code, err, "corrupt stream")
    assert not (tmp_path / "out.png").exists()


def test_a_damaged_stream_with_a_recomputed_checksum_fails_instead_of_decoding_garbage(tmp_path, capsys):
    header, streams = container.unpack((GOLDEN / "s2lic-acgc.clab").read_bytes())
    y = bytearray(streams[0])
    y[len(y) // 2] ^= 0x10  # inside the rANS words: the stream still parses
    damaged = tmp_path / "damaged.clab"
    damaged.write_bytes(container.pack(header, [bytes(y), streams[1]]))
    code, _, err = _run(capsys, "decode", damaged, "-o", tmp_path / "out.png", "-m", GOLDEN / "s2lic-acgc.safetensors")
    _one_line_error(code, err, "corrupt stream")


def _png_header_only(path, width, height):
    """A PNG that declares ``width x height`` RGB pixels and holds almost none (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, capsys):
    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    code, _, err = _run(capsys, "encode", bomb, "-m", MODEL, "-o", tmp_path / "bomb.clab")
    _one_line_error(code, err, "is 30000x30000 = 900000000 pixels, over the limit")


def test_encoding_over_the_input_is_refused_and_the_input_survives(tmp_path, capsys):
    image = tmp_path / "x.png"
    shutil.copy(GOLDEN / "astronaut_97x131.png", image)
    before = image.read_bytes()
    for output in (image, tmp_path / "sub" / ".." / "x.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        code, _, err = _run(capsys, "encode", image, "-m", MODEL, "-o", output)
        _one_line_error(code, err, "is the input")
    assert image.read_bytes() == before
    code, _, err = _run(capsys, "decode", GOLDEN / "mbt2018-mean.clab", "-o", GOLDEN / "mbt2018-mean.clab", "-m", MODEL)
    _one_line_error(code, err, "is the input")


def test_outputs_into_a_folder_or_an_unwritable_place_are_one_line_errors(tmp_path, capsys):
    code, _, err = _run(capsys, "encode", GOLDEN / "astronaut_97x131.png", "-m", MODEL, "-o", tmp_path)
    _one_line_error(code, err, "it is a folder")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = _run(capsys, "encode", GOLDEN / "astronaut_97x131.png", "-m", MODEL, "-o", blocker / "out.clab")
    _one_line_error(code, err, f"cannot write {blocker / 'out.clab'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing partial left


def test_exif_orientation_is_applied_with_a_notice(tmp_path, capsys):
    from codeclab.data.images import read_image

    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "portrait.png", exif=exif)
    assert read_image(tmp_path / "portrait.png").shape == (6, 4, 3)
    assert "EXIF orientation 6 applied" in capsys.readouterr().err


def test_sixteen_bit_colour_is_announced(tmp_path, capsys):
    from codeclab.data.images import read_image

    rows = np.full((3, 5, 3), 0x1234, dtype=">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 3, 16, 2, 0, 0, 0))
    (tmp_path / "deep.png").write_bytes(png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert (read_image(tmp_path / "deep.png") == 0x12).all()
    assert "16-bit colour reduced to 8 bits" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_grayscale_converts_in_integers_exactly_as_round_v_over_257(mode):
    from codeclab.data.images import sixteen_bit_gray_to_rgb8

    rng = np.random.default_rng(0)
    samples = rng.integers(0, 1 << 16, (600, 37)).astype(np.uint16 if mode == "I;16" else np.int32)
    samples[0, :6] = [0, 128, 129, 385, 386, 65535]  # either side of every rounding boundary
    image = Image.fromarray(samples)
    assert image.mode == mode
    old = np.clip(np.round(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)  # the float64 formula it replaces
    assert np.array_equal(sixteen_bit_gray_to_rgb8(image, "a.png"), np.repeat(old[:, :, None], 3, axis=2))
    if mode == "I":  # 32-bit samples beyond 16 bits have no known scale: refused, not clipped
        samples[300, 5] = -1
        with pytest.raises(CodecLabError, match=r"a.png: 32-bit integer samples outside 0..65535 \(-1..65535\)"):
            sixteen_bit_gray_to_rgb8(Image.fromarray(samples), "a.png")


def _special_outputs(tmp_path):
    fifo = tmp_path / "fifo.clab"
    os.mkfifo(fifo)
    null_link = tmp_path / "null.clab"
    null_link.symlink_to(os.devnull)
    return fifo, null_link


def _identity(path):
    """What replacing ``path`` would change (its atime changes on a mere look)."""
    return os.lstat(path).st_ino, os.lstat(path).st_mode, os.readlink(path) if path.is_symlink() else None


def test_outputs_onto_a_fifo_or_a_link_to_a_device_are_refused_and_left_alone(tmp_path, capsys):
    for output in _special_outputs(tmp_path):
        before = _identity(output)
        code, _, err = _run(capsys, "encode", GOLDEN / "astronaut_97x131.png", "-m", MODEL, "-o", output)
        _one_line_error(code, err, f"cannot write {output}: it is a")
        code, _, err = _run(capsys, "decode", GOLDEN / "mbt2018-mean.clab", "-m", MODEL, "-o", output)
        _one_line_error(code, err, "outputs are regular files or new paths")
        assert _identity(output) == before
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.clab", "null.clab"]


def test_fifo_and_device_inputs_are_refused_without_blocking(tmp_path):
    """Subprocesses with a timeout: opening a FIFO for reading would block until a writer came."""
    fifo = tmp_path / "x.y4m"
    os.mkfifo(fifo)
    for args in (("encode", fifo, "-m", MODEL, "-o", tmp_path / "x.clab"), ("decode", fifo, "-o", tmp_path / "x.png"),
                 ("info", "/dev/zero"), ("encode", GOLDEN / "astronaut_97x131.png", "-m", fifo, "-o", tmp_path / "y.clab")):
        proc = subprocess.run([sys.executable, "-m", "codeclab.cli", *map(str, args)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "not a regular file" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.y4m"]


def test_a_full_disk_is_a_one_line_error_that_leaves_nothing(tmp_path, capsys, monkeypatch):
    def no_space(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", no_space)
    code, _, err = _run(capsys, "encode", GOLDEN / "astronaut_97x131.png", "-m", MODEL, "-o", tmp_path / "x.clab")
    _one_line_error(code, err, f"cannot write {tmp_path / 'x.clab'}: No space left on device")
    monkeypatch.setattr(Image.Image, "save", no_space)
    code, _, err = _run(capsys, "decode", GOLDEN / "mbt2018-mean.clab", "-m", MODEL, "-o", tmp_path / "x.png")
    _one_line_error(code, err, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_one_pixel_image_codes_without_warnings(tmp_path, capsys, recwarn):
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    assert main(["encode", str(tmp_path / "dot.png"), "-m", str(MODEL), "-o", str(tmp_path / "dot.clab")]) == 0
    assert main(["decode", str(tmp_path / "dot.clab"), "-o", str(tmp_path / "back.png"), "-m", str(MODEL)]) == 0
    assert capsys.readouterr().err == "" and len(recwarn) == 0


def test_an_untiled_file_larger_than_a_tile_is_refused_before_decoding(tmp_path, capsys):
    big = _rewrite(GOLDEN / "mbt2018-mean.clab", tmp_path / "big.clab", height=4096, width=4096)
    code, _, err = _run(capsys, "decode", big, "-o", tmp_path / "out.png", "-m", MODEL)
    _one_line_error(code, err, "codes one block of 4096x4096 pixels, over the limit of 4194304 per tile")


def test_a_bounded_fuzz_campaign_finds_no_traceback_crash_hang_or_leftover():
    """The CI slice of tools/fuzz_cli.py (the full campaign is in reports/fuzz)."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from fuzz_cli import campaign

    result = campaign(cases=40, subprocess_cases=1, seed=1, timeout=60, model_cases=6, video_cases=8, input_cases=8)
    assert result["failure_count"] == 0, result["failures"]
    for name, count in (("forked", 40), ("models", 6), ("videos", 8), ("inputs", 8)):
        assert sum(result["table"][name].get(k, 0) for k in ("error", "decoded")) == count, name
        assert result["peak_mb"][name] < 2048


def test_what_reading_drops_is_announced(tmp_path, capsys):
    """Multi-frame images, a palette's transparent entry, interlaced Y4M and a video that ends
    before its header says: each read goes on, with a notice naming what was lost."""
    from fractions import Fraction

    import imageio_ffmpeg

    from codeclab.data.images import read_image
    from codeclab.data.video import open_video, y4m_frame, y4m_header

    frames = [Image.new("RGB", (24, 16), colour) for colour in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    palette = Image.new("P", (24, 16), 1)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "palette.png", transparency=1)
    read_image(tmp_path / "anim.gif")
    read_image(tmp_path / "palette.png")
    err = capsys.readouterr().err
    assert "anim.gif: 3 frames (an animation or a multi-page file): only the first is coded" in err
    assert "palette.png: palette image converted to RGB (its transparency dropped)" in err

    planes = (np.zeros((16, 24), np.uint8), np.zeros((8, 12), np.uint8), np.zeros((8, 12), np.uint8))
    header = y4m_header(24, 16, Fraction(25), "limited")
    (tmp_path / "interlaced.y4m").write_bytes(header.replace(b" Ip ", b" It ") + y4m_frame(planes))
    assert len(open_video(tmp_path / "interlaced.y4m").clip().frames) == 1
    assert "interlaced.y4m: interlaced frames (It) are coded as progressive pictures" in capsys.readouterr().err
    (tmp_path / "framex.y4m").write_bytes(header + y4m_frame(planes).replace(b"FRAME\n", b"FRAMEX\n"))
    with pytest.raises(CodecLabError, match="frame 1 has no FRAME marker"):
        open_video(tmp_path / "framex.y4m")

    writer = imageio_ffmpeg.write_frames(str(tmp_path / "whole.mkv"), (64, 48), fps=25, macro_block_size=1)
    writer.send(None)
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.send(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8).tobytes())
    writer.close()
    data = (tmp_path / "whole.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 6 // 10])
    assert len(open_video(tmp_path / "whole.mkv").clip().frames) == 40 and "notice" not in capsys.readouterr().err
    count = len(open_video(tmp_path / "cut.mkv").clip().frames)
    assert 0 < count < 39
    assert f"cut.mkv: {count} of the 40 frames its header declares could be decoded (a truncated file?)" in capsys.readouterr().err


def test_a_models_dir_with_two_different_models_of_one_hash_is_refused(tmp_path, capsys):
    """Format 1-7 files are named by their weights alone: a same-weights copy with another config
    must not be picked silently by a search; identical copies are fine."""
    import json

    from tests.conftest import rewrite_model_file

    coded = GOLDEN / "mbt2018-mean.clab"
    shutil.copy(MODEL, tmp_path / "a.safetensors")
    shutil.copy(MODEL, tmp_path / "copy.safetensors")
    code, _, err = _run(capsys, "decode", coded, "-o", tmp_path / "out.png", "--models-dir", tmp_path)
    assert code == 0, err
    (tmp_path / "out.png").unlink()

    def other_config(meta, _tensors):
        config = json.loads(meta["config"])
        meta["config"] = json.dumps({**config, "N": config["N"] + 1})

    rewrite_model_file(MODEL, mutate_meta=other_config, target=tmp_path / "b.safetensors")
    code, _, err = _run(capsys, "decode", coded, "-o", tmp_path / "out.png", "--models-dir", tmp_path)
    _one_line_error(code, err, "several different model files match the file's model hash")
    assert not (tmp_path / "out.png").exists()
