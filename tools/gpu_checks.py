"""CPU <-> GPU exact decoding and GPU throughput of an image model, in three steps.

    python tools/gpu_checks.py prepare MODEL IMAGE... --out DIR    # here, on the CPU
    python tools/gpu_checks.py device MODEL DIR IMAGE... --out OUT  # on the GPU machine
    python tools/gpu_checks.py verify MODEL OUT                     # here again

``prepare`` codes each image at three rate levels (the lowest, middle and highest of a
variable-rate model; a fixed-rate model's one rate) on the CPU and stores the files, the latents
the CPU decodes from them and the CPU's reconstructions at the middle level. ``device`` decodes
those files on the GPU (latents compared exactly, pixels compared with the CPU's), codes the same
images on the GPU (files and the GPU's decoded latents go to OUT), and times one 1920x1080 frame
as a single block (encode: analysis + entropy coding into file bytes; decode: entropy decoding +
synthesis; median of 5 after a warm-up; ``--frame`` another size). ``verify`` decodes the GPU's files on the CPU and compares
latents. Each step writes ``checks.json``; a check that fails records its error and the others go on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image
import hashlib

from codeclab.coding import get_coder
from codeclab.data.images import read_image
from codeclab.formats.file_coding import codec_input
from codeclab.formats.image_file import decode_image, decode_image_y, file_bytes
from codeclab.formats.model_file import load_model



def _levels(codec) -> list[int | None]:
    """The lowest, middle and highest rate level; [None] for a fixed-rate model."""
    top = codec.rate_levels - 1
    return [0, top // 2, top] if top > 0 else [None]


def _pixel_level(codec) -> int | None:
    return _levels(codec)[len(_levels(codec)) // 2]


def _name(path: Path, level: int | None) -> str:
    return path.stem if level is None else f"{path.stem}_L{level}"


def _encode(codec, image: np.ndarray, level: int, device: torch.device) -> bytes:
    x = codec_input(image, codec.downsampling).to(device)
    coder = get_coder()
    return file_bytes(codec, image, [codec.compress(x, coder, level)], coder, level, None)


def _digest(y_hat: torch.Tensor) -> str:
    """SHA-256 of a latent's float32 bytes: equal digests are bit-identical latents."""
    return hashlib.sha256(y_hat.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def _latent_report(decoded: dict[str, str], reference: dict[str, str]) -> dict:
    mismatched = [name for name in reference if decoded[name] != reference[name]]
    return {"files": len(reference), "latent_mismatches": len(mismatched), "mismatched": mismatched}


def _pixel_report(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict:
    diffs = [np.abs(ours[name].astype(np.int16) - theirs[name].astype(np.int16)) for name in theirs]
    return {"images": len(diffs), "max_abs_diff": int(max(d.max() for d in diffs)),
            "differing_samples": float(np.mean([np.mean(d > 0) for d in diffs]))}


def _check(results: dict, name: str, function) -> None:
    try:
        results[name] = function()
    except Exception as err:  # a failed check is a result; the next check still runs
        results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=4)}
    print(name, json.dumps(results[name])[:400], flush=True)


def prepare(args) -> dict:
    codec, out = load_model(args.model), Path(args.out)
    (out / "files").mkdir(parents=True, exist_ok=True)
    latents = {}
    for path in map(Path, args.images):
        image = read_image(path, notice=None)
        for level in _levels(codec):
            name = _name(path, level)
            data = _encode(codec, image, level, torch.device("cpu"))
            (out / "files" / f"{name}.clab").write_bytes(data)
            latents[name] = _digest(decode_image_y(data, codec)[0])
            if level == _pixel_level(codec):
                Image.fromarray(decode_image(data, codec)).save(out / "files" / f"{name}.png")
    (out / "cpu_latents.json").write_text(json.dumps(latents, indent=1))
    return {"files": len(latents)}


def _decode_cpu_files(codec, folder: Path, device: torch.device) -> dict:
    reference = json.loads((folder / "cpu_latents.json").read_text())
    decoded, ours, theirs = {}, {}, {}
    for name in reference:
        data = (folder / "files" / f"{name}.clab").read_bytes()
        decoded[name] = _digest(decode_image_y(data, codec)[0])
        png = folder / "files" / f"{name}.png"
        if png.exists():
            ours[name], theirs[name] = decode_image(data, codec), np.asarray(Image.open(png).convert("RGB"))
    return {**_latent_report(decoded, reference), "pixels_vs_cpu": _pixel_report(ours, theirs), "device": str(device)}


def _encode_on_device(codec, images: list[str], out: Path, device: torch.device) -> dict:
    (out / "files").mkdir(parents=True, exist_ok=True)
    latents = {}
    for path in map(Path, images):
        image = read_image(path, notice=None)
        for level in _levels(codec):
            name = _name(path, level)
            data = _encode(codec, image, level, device)
            (out / "files" / f"{name}.clab").write_bytes(data)
            latents[name] = _digest(decode_image_y(data, codec)[0])
    (out / "device_latents.json").write_text(json.dumps(latents, indent=1))
    return {"files": len(latents)}


def _timed(function, device: torch.device, runs: int = 5) -> float:
    function()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _throughput(codec, image_path: str, size: tuple[int, int], device: torch.device) -> dict:
    """Frames per second on one frame of ``size`` (width, height) tiled from a photograph."""
    small, (width, height), level = read_image(image_path, notice=None), size, _pixel_level(codec)
    reps = (-(-height // small.shape[0]), -(-width // small.shape[1]), 1)
    frame = np.ascontiguousarray(np.tile(small, reps)[:height, :width])
    data = _encode(codec, frame, level, device)
    x = codec_input(frame, codec.downsampling).to(device)
    encode = _timed(lambda: _encode(codec, frame, level, device), device)
    analysis = _timed(lambda: codec.analysis(x), device)
    decode = _timed(lambda: decode_image(data, codec), device)
    return {"frame": f"{width}x{height}, one block", "level": level, "bytes": len(data),
            "encode_s": encode, "encode_fps": 1 / encode, "analysis_s": analysis,
            "decode_s": decode, "decode_fps": 1 / decode,
            "transforms": str(codec.transform_dtype), "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}


def device_checks(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    codec, out, results = load_model(args.model).to(device), Path(args.out), {}
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        _check(results, "cpu_files_decoded_here", lambda: _decode_cpu_files(codec, Path(args.folder), device))
        _check(results, "encoded_here", lambda: _encode_on_device(codec, args.images, out, device))
        size = tuple(map(int, args.frame.split("x")))
        _check(results, "throughput", lambda: _throughput(codec, args.images[0], size, device))
    results["torch"] = torch.__version__
    return results


def verify(args) -> dict:
    codec, folder = load_model(args.model), Path(args.out)
    reference = json.loads((folder / "device_latents.json").read_text())
    decoded = {name: _digest(decode_image_y((folder / "files" / f"{name}.clab").read_bytes(), codec)[0]) for name in reference}
    return {"device_files_decoded_on_cpu": _latent_report(decoded, reference)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "device", "verify"])
    parser.add_argument("model")
    parser.add_argument("folder", nargs="?", help="device: the folder prepare wrote")
    parser.add_argument("images", nargs="*")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frame", default="1920x1080", help="device: WIDTHxHEIGHT of the timed frame")
    args = parser.parse_args()
    if args.step == "prepare":  # its positional images land in folder + images
        args.images = [args.folder, *args.images]
    results = {"prepare": prepare, "device": device_checks, "verify": verify}[args.step](args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"checks_{args.step}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1)[:3000])
    sys.exit(0)


if __name__ == "__main__":
    main()
