"""Lossless coding on Kodak: the probabilistic-circuit codec (pc-lossless) against PNG, WebP,
JPEG XL and JPEG 2000, all run live on one thread.

Each image is coded to real bytes and decoded; every codec must return the image byte for byte
(the run stops otherwise). Rate: bits per dimension (file bits / (H x W x 3)); speed: raw image
megabytes (H x W x 3 bytes) per second of encode and of decode, wall time. For pc-lossless the
float model's own estimate (its log-likelihood, no coding) is reported beside the file size, so
the cost of the exact integer coder shows. Baselines: PNG (zlib level 9, ``optimize``), WebP
lossless (method 6, the slowest and strongest), JPEG XL lossless (effort 7, libjxl's default;
``num_threads=1``), JPEG 2000 lossless (OpenJPEG, reversible 5/3 wavelet with the colour transform).

Usage: OMP_NUM_THREADS=1 python benchmarks/lossless_kodak.py --model models/lossless/pc_hclt_bsds.safetensors \\
           [--images DIR [--splits val]] [--max-images N] [--json-file reports/lossless/kodak.json] [--smoke]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from codeclab.data.images import list_images, read_image
from codeclab.evaluation.classic import PillowCodec
from codeclab.formats.file_coding import codec_input
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# Each at its one lossless setting (the ladder's only entry).
BASELINES = [
    PillowCodec("PNG", [9], format="PNG", setting_param="compress_level", params={"optimize": True}),
    PillowCodec("WebP lossless", [6], format="WEBP", setting_param="method", params={"lossless": True, "quality": 100}),
    PillowCodec("JPEG XL lossless", [7], format="JXL", setting_param="effort", params={"lossless": True, "num_threads": 1},
                plugin="pillow_jxl", package="pillow-jxl-plugin"),
    PillowCodec("JPEG 2000 lossless", [False], format="JPEG2000", setting_param="irreversible", params={"mct": 1}),
]


def _timed(function, *args):
    start = time.perf_counter()
    out = function(*args)
    return out, time.perf_counter() - start


def run(images, codec) -> dict:
    rows = []
    for name, image in images:
        dims = image.size
        data, encode_s = _timed(encode_image, codec, image)
        decoded, decode_s = _timed(decode_image, data, codec)
        if not np.array_equal(decoded, image):
            raise SystemExit(f"pc-lossless did not return {name} byte for byte")
        with torch.no_grad():  # the float model's rate of the padded input the encoder coded
            estimate = -codec(codec_input(image, codec.downsampling))["likelihoods"]["y"].log2().sum().item() / dims
        rows.append({"image": name, "codec": "pc-lossless", "bpd": 8 * len(data) / dims, "model_bpd": estimate,
                     "encode_s": encode_s, "decode_s": decode_s, "bytes_raw": dims})
        for baseline in BASELINES:
            if baseline.available():
                continue
            coded = baseline.code(image, baseline.ladder[0])
            if not np.array_equal(coded.decoded, image):
                raise SystemExit(f"{baseline.name} did not return {name} byte for byte")
            rows.append({"image": name, "codec": baseline.name, "bpd": 8 * coded.nbytes / dims, "encode_s": coded.enc_s,
                         "decode_s": coded.dec_s, "bytes_raw": dims})
    return {"images": len(images), "rows": rows, "summary": summarise(rows),
            "versions": {baseline.name: baseline.version() for baseline in BASELINES if not baseline.available()}}


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for label in dict.fromkeys(r["codec"] for r in rows):
        group = [r for r in rows if r["codec"] == label]
        raw = sum(r["bytes_raw"] for r in group) / 1e6
        entry = {"codec": label, "bpd": float(np.mean([r["bpd"] for r in group])),
                 "encode_MBps": raw / sum(r["encode_s"] for r in group), "decode_MBps": raw / sum(r["decode_s"] for r in group)}
        if "model_bpd" in group[0]:
            entry["model_bpd"] = float(np.mean([r["model_bpd"] for r in group]))
        table.append(entry)
    return table


def _text(result: dict) -> str:
    lines = [f"{result['images']} images, one thread, every file decoded byte for byte", "",
             "| codec | bits per dimension | encode MB/s | decode MB/s |", "| --- | --- | --- | --- |"]
    for e in result["summary"]:
        model = f" (model: {e['model_bpd']:.3f})" if "model_bpd" in e else ""
        lines.append(f"| {e['codec']} | {e['bpd']:.3f}{model} | {e['encode_MBps']:.3f} | {e['decode_MBps']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--model", required=True, help="a pc-lossless model file (train.py experiment=pc_lossless)")
    parser.add_argument("--images", type=Path, default=None, help="a folder of images (default: the shared Kodak)")
    parser.add_argument("--splits", nargs="+", default=None, help="only these splits of the folder's SPLITS.txt (e.g. val)")
    parser.add_argument("--max-images", type=int, default=None)
    args = _common.parse(parser, argv, model=_smoke_model, max_images=1)
    folder = args.images or _common.data_dir(args.smoke) / "kodak"
    images = [(Path(p).stem, read_image(p, notice=None)) for p in list_images(str(folder), args.splits)][: args.max_images]
    start = time.perf_counter()
    result = run(images, load_model(args.model))
    result["seconds"] = time.perf_counter() - start
    _common.emit(args, result, _text(result))


def _smoke_model() -> str:
    from codeclab.codecs import pc_lossless
    from codeclab.formats.model_file import export_model

    path = _common.smoke_scratch() / "pc_lossless.safetensors"
    export_model(pc_lossless(patch=4, hidden=4), path)
    return str(path)


if __name__ == "__main__":
    main()
