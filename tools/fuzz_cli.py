"""Fuzz campaign: malformed CodecLab files through ``codeclab decode``, under time and memory limits.

Seeds are the golden files of every codec family (``tests/golden``, container version 1), and
each of them as CodecLab writes it now (version 5: the same streams with the latent check that
the decoded latents give). Each case mutates one seed:

* ``random``: random bytes (random length, sometimes behind a valid magic);
* ``truncate``: the file cut at a random byte;
* ``flip``: 1-8 random bit flips, checksum left as is;
* ``flip_crc``: bit flips inside the streams, checksum recomputed (only the decoder can notice);
* ``header``: one header field set to an extreme or wrong value (size, level, tile, coder,
  codec id, stream count, stream split), checksum recomputed.

``--models`` further cases decode an intact golden file with a mutated copy of its model file
(:func:`mutate_model`: a config value set to an extreme or wrong value, a tensor reshaped, cast,
dropped or added, entropy tables damaged, or the codec or format version changed), the weights
hash recomputed so that only the checks of the model itself can refuse it.

``--videos`` further cases decode a mutated CodecLab video file (the seeds: a 5-frame clip coded
by a small STEM model, I and P frames, and the same clip coded all-intra by the golden
mbt2018-mean; the image mutations plus frame-index fields: frame count, frame types, stream
counts, level, intra period, frame rate and colour, with every CRC recomputed), and ``--inputs``
further cases encode a hostile video input (a Y4M with a mutated header, FRAME marker or length,
a PNG-frame folder with a damaged, odd-sized or missing frame, or a cut or damaged MKV). A tenth
of all cases write to a hostile output instead (a FIFO, a symlink to ``/dev/null``, a folder
that is not empty), which must be refused. A decode that succeeds is compared with the decode of
the intact file (and model): ``decoded_same`` or ``decoded_different`` (a garbage decode, or a
valid file that means another picture, such as a smaller size or another rate level). The table
counts outcomes per mutation kind (``kind:outcome``), so the damaged files that decode with exit 0
are counted by what damaged them, and by the seed's container version (``flip_crc@v5``: damage to a
file written now). A current-version file that decodes to other pixels is a failure.

Every case runs ``codeclab.cli.main(["decode", FILE, "-o", OUT, "-m", MODEL])`` in a process
forked from one that has imported torch and CodecLab (a crash is a dead process, not a lost
campaign), with a time limit (a hang) and its peak resident memory read from the kernel;
``--subprocess`` further cases run the real ``codeclab`` command. Outcomes: ``decoded`` (exit 0),
``error`` (exit 1 with one line ``codeclab: error: ...``), ``traceback``, ``crash`` (killed by a
signal), ``hang``, plus ``leftover`` (any file left in the case's output folder after a failure).

Usage: python tools/fuzz_cli.py [--cases 10000] [--subprocess 1000] [--models 0] [--videos 0] [--inputs 0] [--seed 0]
       [--timeout 60] [--json FILE]
"""

from __future__ import annotations

import argparse
import bisect
import fractions
import itertools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def seeds() -> list[tuple[bytes, Path]]:
    """The golden files with their models, then those that decode here as the current container writes them."""
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    golden = [((GOLDEN / name).read_bytes(), (GOLDEN / record["model"]).resolve()) for name, record in sorted(manifest.items())]
    return golden + [(current, model) for data, model in golden if (current := with_latent_check(data, model))]


def with_latent_check(data: bytes, model: Path) -> bytes | None:
    """An old file's streams and fields with the latent check of its decoded latents: the file the
    current encoder writes (tests/formats/test_golden.py); None if it does not decode here."""
    from dataclasses import replace

    from codeclab.errors import CodecLabError
    from codeclab.formats import container
    from codeclab.formats.file_coding import latent_crc
    from codeclab.formats.image_file import decode_image_y
    from codeclab.formats.model_file import load_model

    header, streams = container.unpack(data)
    try:
        crcs = [latent_crc(y_hat) for y_hat in decode_image_y(data, load_model(model))]
    except CodecLabError:  # a float entropy model written on another CPU
        return None
    return container.pack(replace(header, latent_check=container.latent_check(header, crcs)), streams)


def file_version(data: bytes) -> int:
    """The container version byte of an image or video file (after the 4-byte magic)."""
    return data[4]


def has_latent_check(data: bytes) -> bool:
    """Whether an intact image (version 5+) or video (version 3+) file carries latent checks."""
    return file_version(data) >= {b"CLAB": 5, b"CLAV": 3}[data[:4]]


EXTREMES = [0, -1, 1, 2, 3, 7, 1024, 1025, 4097, 1 << 20, 10**9, 10**18, 0.5, -1e300, float("nan"), float("inf"),
            "", "x", "integer", None, True, [], [1] * 100, {}, {"name": "x"}, [[[[[1]]]]]]


def _config_paths(value, path=()) -> list[tuple]:
    """Paths (key and index sequences) of every value in a JSON config."""
    paths = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _config_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _config_paths(item, (*path, index))
    return paths


def mutate_model(model: Path, rng: random.Random, target: Path) -> str:
    """A mutated copy of ``model`` at ``target`` (weights hash recomputed); returns the mutation's kind."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from codeclab.formats.model_file import weights_sha256

    with safe_open(str(model), framework="pt") as handle:
        meta, state = dict(handle.metadata()), {k: handle.get_tensor(k) for k in handle.keys()}
    kind = rng.choice(["config", "shape", "dtype", "drop", "extra", "tables", "metadata"])
    name = rng.choice(sorted(state))
    if kind == "config":
        config = json.loads(meta["config"])
        paths = _config_paths(config) or [(rng.choice(["N", "M", "rate_levels"]),)]
        *parents, last = rng.choice(paths) if rng.random() < 0.9 else (f"unknown{rng.randrange(9)}",)
        node = config
        for key in parents:
            node = node[key]
        node[last] = rng.choice(EXTREMES)
        meta["config"] = json.dumps(config)
    elif kind == "shape":
        shape = list(state[name].shape) or [1]
        shape[rng.randrange(len(shape))] = rng.choice([0, 1, 2, 5000, 1 << 20])
        if math.prod(shape) > 1 << 22:  # a huge shape without its bytes: zero elements
            shape[rng.randrange(len(shape))] = 0
        state[name] = torch.zeros(shape, dtype=state[name].dtype)
    elif kind == "dtype":
        state[name] = state[name].to(rng.choice([torch.float64, torch.float16, torch.int8, torch.int32, torch.uint8]))
    elif kind == "drop":
        del state[name]
    elif kind == "extra":
        state[f"{name}.extra" if rng.random() < 0.5 else "extra"] = torch.zeros(rng.choice([0, 1, 1000]))
    elif kind == "tables":
        tables = [k for k in state if k.rsplit(".", 1)[-1] in ("_quantized_cdf", "_offset", "_cdf_length")] or [name]
        table = state[rng.choice(tables)].reshape(-1)
        if table.numel():
            table[rng.randrange(table.numel())] = rng.choice([-1, 0, 1, 2, 1 << 16, (1 << 16) + 1, 1 << 30])
    else:
        key = rng.choice(["codec", "format_version"])
        meta[key] = rng.choice(["mbt2018-mean", "s2lic", "walloc", "vqgan", "stem"] if key == "codec" else [str(v) for v in range(10)])
    meta["weights_sha256"] = weights_sha256(state)
    save_file(state, str(target), metadata=meta)
    return kind


BYTE_DAMAGE = ("random", "truncate", "flip")


def byte_damage(kind: str, data: bytes, rng: random.Random, magic: bytes) -> bytes:
    """A file damaged without regard to its layout: random bytes (half behind ``magic``), cut, or 1-8 bit flips."""
    if kind == "random":
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
        return magic + body if rng.random() < 0.5 else body
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    from codeclab.coding import CODERS
    from codeclab.formats import container

    kind = rng.choice(["random", "truncate", "flip", "flip_crc", "header"])
    if kind in BYTE_DAMAGE:
        return kind, byte_damage(kind, data, rng, container.MAGIC)
    header, streams = container.unpack(data)
    fields = dict(header.__dict__)
    if kind == "flip_crc":
        streams = [bytearray(s) for s in streams]
        for _ in range(rng.randint(1, 8)):
            target = rng.choice([s for s in streams if s] or [bytearray(b"\0")])
            target[rng.randrange(len(target))] ^= 1 << rng.randrange(8)
        streams = [bytes(s) for s in streams]
    else:
        field = rng.choice(["height", "width", "size", "level", "tile", "coder", "codec_id", "streams", "split"])
        if field in ("height", "width"):
            fields[field] = rng.choice([1, 2, 63, 65, 4097, 1 << 16, 1 << 20, rng.randint(1, 1 << 20)])
        elif field == "size":
            fields["height"], fields["width"] = rng.choice([(1 << 20, 1 << 16), (1 << 20, 1 << 20), (16384, 16384), (20000, 15000)])
        elif field == "level":
            fields["level"] = rng.choice([0, 1, 63, 64, 255, 1 << 30])
        elif field == "tile":
            fields["tile"] = rng.choice([1, 16, 64, 100, 128, 1 << 20])
        elif field == "coder":
            fields["coder"] = rng.choice(sorted(CODERS.wire_ids))
        elif field == "codec_id":
            fields["codec_id"] = rng.choice(["mbt2018-mean", "s2lic", "walloc", "vqgan", "bmshj2018-factorized", "x"])
        elif field == "streams":
            streams = streams[: rng.randrange(len(streams))] if rng.random() < 0.5 else streams + [b"\0" * rng.randint(0, 9)]
        else:  # move bytes from one stream to the next
            if len(streams) > 1 and streams[0]:
                cut = rng.randrange(len(streams[0]))
                streams = [streams[0][:cut], streams[0][cut:] + streams[1], *streams[2:]]
    fields["stream_lengths"] = tuple(map(len, streams))
    try:
        return kind, container.pack(container.Header(**fields), streams)
    except (ValueError, TypeError):
        return kind, data[:-1]


def _classify(code: int | None, signalled: int | None, err: str, timed_out: bool, leftovers: list[str]) -> str:
    if timed_out:
        return "hang"
    if signalled:
        return "crash"
    if "Traceback" in err:
        return "traceback"
    if code == 0:
        return "decoded"
    if code == 1 and err.startswith("codeclab: error: ") and err.count("\n") == 1:
        return "error"
    return "traceback"


def run_forked(command: list[str], out_dir: Path, timeout: float) -> dict:
    """One case (``codeclab COMMAND``) in a forked child: outcome, peak RSS (MB), leftover files."""
    from codeclab.cli import main

    err_path = out_dir.parent / f"{out_dir.name}.err"
    pid = os.fork()
    if pid == 0:  # the child: stderr to a file, run the CLI, never return into the parent's code
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        # The file objects too: a test runner may have replaced them with its own captures.
        sys.stderr, sys.stdout = open(2, "w", buffering=1, closefd=False), open(1, "w", closefd=False)
        try:
            code = main(command)
        except BaseException:  # noqa: BLE001 - anything escaping main is what the campaign looks for
            traceback.print_exc()
            code = 2
        sys.stderr.flush()
        os._exit(code)
    deadline, status, usage, timed_out = time.monotonic() + timeout, None, None, False
    while status is None:
        done, status_value, usage_value = os.wait4(pid, os.WNOHANG)
        if done:
            status, usage = status_value, usage_value
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            timed_out = True
        else:
            time.sleep(0.002)
    err = err_path.read_text(errors="replace")
    signalled = os.WTERMSIG(status) if os.WIFSIGNALED(status) and not timed_out else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    outcome = _classify(code, signalled, err, timed_out, [])
    leftovers = sorted(p.name for p in out_dir.iterdir()) if outcome != "decoded" else []
    return {"outcome": outcome, "peak_mb": usage.ru_maxrss / 1024, "leftover": leftovers, "stderr": err[-300:]}


def run_subprocess(command: list[str], out_dir: Path, timeout: float) -> dict:
    start_env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "import resource, sys; from codeclab.cli import main; code = main(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stdout); sys.exit(code)", *command]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=start_env)
    except subprocess.TimeoutExpired:
        return {"outcome": "hang", "peak_mb": float("nan"), "leftover": sorted(p.name for p in out_dir.iterdir()), "stderr": ""}
    signalled = -proc.returncode if proc.returncode < 0 else None
    outcome = _classify(proc.returncode, signalled, proc.stderr, False, [])
    lines = proc.stdout.strip().splitlines()
    peak = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan")
    leftovers = sorted(p.name for p in out_dir.iterdir()) if outcome != "decoded" else []
    return {"outcome": outcome, "peak_mb": peak, "leftover": leftovers, "stderr": proc.stderr[-300:]}


def video_seeds(folder: Path) -> tuple[list[tuple[bytes, Path]], dict[str, Path], Path]:
    """``(coded video files with their models, source videos by kind, the STEM model)``: a
    small seeded STEM model, a 5-frame clip of 50x70 (odd sizes) as Y4M, PNG frames and MKV."""
    import imageio_ffmpeg
    import numpy as np
    import torch

    from codeclab.codecs import stem
    from codeclab.data.video import Clip, write_video
    from codeclab.formats.model_file import export_model, load_model
    from codeclab.formats.video_file import encode_video

    torch.manual_seed(0)
    model = folder / "stem.safetensors"
    export_model(stem(N=8, M=12, rate_levels=4, scale_table_levels=256, spatial="checkerboard"), model)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (58, 90, 3)).astype(np.uint8)
    clip = Clip([np.ascontiguousarray(base[4:54, 3 * t : 3 * t + 70]) for t in range(5)], fractions.Fraction(25), "limited",
                "bt601", "y4m")
    sources = {"y4m": folder / "clip.y4m", "png": folder / "frames", "mkv": folder / "clip.mkv"}
    write_video(sources["y4m"], clip)
    write_video(sources["png"], clip)
    writer = imageio_ffmpeg.write_frames(str(sources["mkv"]), (70, 50), fps=25, macro_block_size=1)
    writer.send(None)
    for frame in clip.frames:
        writer.send(frame.tobytes())
    writer.close()
    image_model = (GOLDEN / "mbt2018-mean.safetensors").resolve()
    coded = [(encode_video(load_model(model), clip, intra_period=3, level=2).data, model),
             (encode_video(load_model(image_model), clip, intra_period=1).data, image_model)]
    return coded, sources, model


def mutate_video(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A damaged copy of a CodecLab video file (see the module's docstring)."""
    from dataclasses import replace

    from codeclab.formats.video_container import VIDEO_MAGIC, frame_streams, pack_video, unpack_video

    kind = rng.choice(["random", "truncate", "flip", "flip_crc", "header"])
    if kind in BYTE_DAMAGE:
        return kind, byte_damage(kind, data, rng, VIDEO_MAGIC)
    header, offset = unpack_video(data)
    frames = frame_streams(data, header, offset)
    fields, records = dict(header.__dict__), list(header.records)
    if kind == "flip_crc":
        streams = [bytearray(s) for frame in frames for s in frame]
        for _ in range(rng.randint(1, 8)):
            target = rng.choice([s for s in streams if s])
            target[rng.randrange(len(target))] ^= 1 << rng.randrange(8)
        flat = iter(bytes(s) for s in streams)
        frames = [[next(flat) for _ in frame] for frame in frames]
    else:
        field = rng.choice(["width", "height", "frames", "kind", "streams", "level", "intra_period", "fps", "colour"])
        if field in ("width", "height"):
            fields[field] = rng.choice([1, 2, 49, 51, 4097, 1 << 16, 1 << 20])
        elif field == "frames":
            count = rng.choice([1, 2, 4, 6, 1000])
            records, frames = (records * 1000)[:count], (frames * 1000)[:count]
        elif field == "kind":
            index = rng.randrange(len(records))
            records[index] = replace(records[index], kind="P" if records[index].kind == "I" else "I")
        elif field == "streams":
            index = rng.randrange(len(frames))
            frames[index] = frames[index][:-1] if rng.random() < 0.5 else frames[index] + [b"\0" * rng.randint(0, 9)]
        elif field == "level":
            fields["level"] = rng.choice([None, 0, 3, 4, 64, 1 << 30])
        elif field == "intra_period":
            fields["intra_period"] = rng.choice([0, 1, 2, 1 << 30])
        elif field == "fps":
            fields["fps"] = fractions.Fraction(rng.choice([1, 1000, 1 << 30]), rng.choice([1, 1001, 1 << 30]))
        else:
            fields["colour_range"], fields["matrix"], fields["y4m_source"] = rng.choice([("full", "bt709", False),
                                                                                       ("limited", "bt601", True)])
    fields["records"] = tuple(replace(r, stream_lengths=tuple(map(len, f))) for r, f in zip(records, frames))
    try:
        return kind, pack_video(type(header)(**fields), frames)
    except (ValueError, TypeError, OverflowError):
        return kind, data[:-1]


def mutate_input(sources: dict[str, Path], rng: random.Random, case: Path) -> tuple[str, Path]:
    """A hostile video input written under ``case``: ``(kind, path)``."""
    from PIL import Image

    kind = rng.choice(["y4m_header", "y4m_marker", "y4m_length", "png", "mkv"])
    if kind.startswith("y4m"):
        data = sources["y4m"].read_bytes()
        head, _, body = data.partition(b"\n")
        if kind == "y4m_header":
            tokens = head.split(b" ")
            tokens[rng.randrange(1, len(tokens))] = rng.choice([b"W0", b"W1048577", b"H99999", b"F0:1", b"F25:0", b"C444",
                                                                 b"Ib", b"Im", b"A0:0", b"X" * 200, b"", b"H-1"])
            data = b" ".join(tokens) + b"\n" + body
        elif kind == "y4m_marker":
            out = bytearray(data)
            at = rng.choice([i for i in range(len(out) - 5) if out[i : i + 5] == b"FRAME"])
            out[at + rng.randrange(6)] = rng.getrandbits(8)
            data = bytes(out)
        else:
            data = data[: rng.randrange(len(data))] if rng.random() < 0.7 else data + bytes(rng.randint(1, 999))
        path = case / "in.y4m"
        path.write_bytes(data)
        return kind, path
    if kind == "png":
        path = case / "frames"
        shutil.copytree(sources["png"], path)
        frames = sorted(path.iterdir())
        victim = rng.choice(frames)
        damage = rng.choice(["truncate", "size", "delete_all", "text", "mode"])
        if damage == "truncate":
            victim.write_bytes(victim.read_bytes()[: rng.randrange(victim.stat().st_size)])
        elif damage == "size":
            Image.new("RGB", rng.choice([(71, 50), (70, 49), (1, 1)])).save(victim)
        elif damage == "mode":
            Image.new(rng.choice(["I;16", "RGBA", "P", "1", "L"]), (70, 50)).save(victim)
        elif damage == "delete_all":
            for frame in frames:
                frame.unlink()
        else:
            victim.write_text("not a png")
        return f"png_{damage}", path
    data = bytearray(sources["mkv"].read_bytes())
    if rng.random() < 0.5:
        data = data[: rng.randrange(len(data))]
    else:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path = case / "in.mkv"
    path.write_bytes(bytes(data))
    return kind, path


def hostile_output(rng: random.Random, case: Path, name: str) -> tuple[str | None, Path]:
    """The output path of a case: a new file, or (a tenth of cases) something that must be refused."""
    if rng.random() >= 0.1:
        return None, case / "out" / name
    kind = rng.choice(["fifo", "symlink_devnull", "folder"])
    target = case / f"hostile_{name}"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink_devnull":
        target.symlink_to(os.devnull)
    else:  # a folder with something in it (a new or empty folder is a valid place for PNG frames)
        target = case / "full"
        target.mkdir()
        (target / "keep.txt").write_text("not to be replaced")
    return kind, target


def output_digest(path: Path) -> str:
    """SHA-256 of a decoded PNG's pixels or a decoded Y4M's bytes."""
    import hashlib

    import numpy as np
    from PIL import Image

    if path.suffix == ".png":
        return hashlib.sha256(np.asarray(Image.open(path)).tobytes()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def campaign(cases: int, subprocess_cases: int, seed: int, timeout: float, model_cases: int = 0, video_cases: int = 0,
             input_cases: int = 0) -> dict:
    import torch  # noqa: F401 - imported once in the parent, inherited by every forked case

    import codeclab.cli  # noqa: F401
    from codeclab.formats.model_file import load_model

    for _, model in seeds():  # warm the model files' page cache and imports
        load_model(model)
    rng = random.Random(seed)
    pool = seeds()
    kinds = ("forked", "subprocess", "models", "videos", "inputs")
    table: dict[str, Counter] = {k: Counter() for k in kinds}
    peaks: dict[str, float] = dict.fromkeys(kinds, 0.0)
    failures = []
    bounds = list(itertools.accumulate([cases, subprocess_cases, model_cases, video_cases, input_cases]))
    with tempfile.TemporaryDirectory() as tmp:
        if video_cases or input_cases:
            (Path(tmp) / "seeds").mkdir()
            video_pool, sources, stem_model = video_seeds(Path(tmp) / "seeds")
        references: dict[tuple, str] = {}
        intact_models = {data: model for data, model in pool + (video_pool if video_cases or input_cases else [])}

        def pool_model(name: str, model: Path, data: bytes) -> Path:
            return intact_models[data] if name == "models" else model

        def reference(data: bytes, model: Path, output_name: str) -> str:
            """The digest of the intact file's decode, once per seed."""
            key = (data, output_name)
            if key not in references:
                folder = Path(tmp) / f"reference{len(references)}"
                (folder / "out").mkdir(parents=True)
                (folder / "in.clab").write_bytes(data)
                run_forked(["decode", str(folder / "in.clab"), "-o", str(folder / "out" / output_name), "-m", str(model), "--quiet"],
                           folder / "out", timeout)
                references[key] = output_digest(folder / "out" / output_name)
            return references[key]

        for index in range(bounds[-1]):
            name = kinds[bisect.bisect_right(bounds, index)]
            runner = run_subprocess if name == "subprocess" else run_forked
            case = Path(tmp) / f"case{index}"
            (case / "out").mkdir(parents=True)
            output_kind, output = hostile_output(rng, case, {"videos": "out.y4m", "inputs": "out.clab"}.get(name, "out.png"))
            if name == "inputs":
                kind, source = mutate_input(sources, rng, case)
                command = ["encode", str(source), "-m", str(stem_model), "-o", str(output), "--level", "1", "--quiet"]
            else:
                if name == "videos":
                    data, model = video_pool[index % len(video_pool)]
                    kind, mutated = mutate_video(data, rng)
                else:
                    data, model = pool[index % len(pool)]
                    if name == "models":  # an intact file, a mutated model
                        mutated = data
                        kind, model = mutate_model(model, rng, case / "model.safetensors"), case / "model.safetensors"
                    else:
                        kind, mutated = mutate(data, rng)
                (case / "in.clab").write_bytes(mutated)
                command = ["decode", str(case / "in.clab"), "-o", str(output), "-m", str(model), "--quiet"]
                kind = f"{kind}@v{file_version(data)}"
            kind = f"output_{output_kind}" if output_kind else kind
            before = {*case.rglob("*"), case / "out.err"}  # out.err: the forked runner's capture of stderr
            result = runner(command, case / "out", timeout)
            if result["outcome"] != "decoded":  # temporaries left beside a refused output count too
                result["leftover"] = sorted({*result["leftover"], *(str(p.relative_to(case)) for p in set(case.rglob("*")) - before)})
            table[name][result["outcome"]] += 1
            table[name][f"kind:{kind}"] += 1
            table[name][f"{kind}:{result['outcome']}"] += 1
            if result["leftover"]:
                table[name]["leftover"] += 1
            peaks[name] = max(peaks[name], result["peak_mb"])
            garbage = False
            if result["outcome"] == "decoded" and name != "inputs" and not output_kind:
                same = output_digest(output) == reference(data, pool_model(name, model, data), output.name)
                table[name][f"{kind}:decoded_{'same' if same else 'different'}"] += 1
                table[name][f"decoded_{'same' if same else 'different'}"] += 1
                garbage = not same and has_latent_check(data)
            if (result["outcome"] in ("traceback", "crash", "hang") or result["leftover"] or garbage
                    or (output_kind and result["outcome"] == "decoded")):
                failures.append({"case": index, "kind": kind, **result})
            shutil.rmtree(case, ignore_errors=True)
    return {"seed": seed, "timeout_s": timeout, "table": {k: dict(v) for k, v in table.items() if v},
            "peak_mb": {k: v for k, v in peaks.items() if table[k]}, "failures": failures[:20], "failure_count": len(failures)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000, help="cases in forked workers")
    parser.add_argument("--subprocess", type=int, default=1000, help="further cases through real codeclab processes")
    parser.add_argument("--models", type=int, default=0, help="further forked cases with a mutated model file")
    parser.add_argument("--videos", type=int, default=0, help="further forked cases decoding a mutated video file")
    parser.add_argument("--inputs", type=int, default=0, help="further forked cases encoding a hostile video input")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = campaign(args.cases, args.subprocess, args.seed, args.timeout, model_cases=args.models, video_cases=args.videos,
                      input_cases=args.inputs)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 1 if result["failure_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
