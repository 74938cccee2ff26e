"""SGA refinement on Kodak: RD gain and encode time against the unrefined encoder, side by side.

Each image is coded twice at each level, in the same process: plainly and with ``--iterations``
SGA iterations (``codeclab encode --refine N``), to real files, decoded with the ordinary decoder
and measured (RGB PSNR of the decoded uint8 image, bpp from the file's bytes). The BD-rate of the
refined curve against the plain one (cubic and PCHIP) is the gain; the published Kodak points of
the reference (``../shared/data/reference_rd/sga``: their mbt2018 base model, and with SGA at 2000
iterations) give the reference gain over the same computation.

Scaled for a 2-core CPU (the scale is stated in the output): ``--images`` Kodak images,
centre-cropped to ``--crop`` (W x H; 0 keeps the full image), ``--levels`` of the model, one thread.

Usage: OMP_NUM_THREADS=1 python benchmarks/sga_kodak.py [--iterations 500] [--out reports/sga] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codeclab.evaluation.bd_rate import bd
from codeclab.evaluation.curves import read_curve
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import load_model
from codeclab.measures import bits_per_pixel, psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def _crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if not width:
        return image
    h, w = image.shape[:2]
    if w < h:  # portrait Kodak images: the same crop, turned
        width, height = height, width
    top, left = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(image[top: top + height, left: left + width])


def _point(codec, image, level, refine) -> dict:
    start = time.perf_counter()
    data = encode_image(codec, image, level, refine=refine)
    seconds = time.perf_counter() - start
    decoded = decode_image(data, codec)
    mse = np.mean((decoded.astype(np.float64) - image.astype(np.float64)) ** 2) / 255**2
    return {"bpp": bits_per_pixel(len(data), *image.shape[:2]), "psnr": float(psnr(mse)), "encode_s": seconds}


def _summary(points: list[dict], levels: list[int], key: str) -> tuple[list[float], list[float]]:
    rows = [[p[key] for p in points if p["level"] == level] for level in levels]
    return [float(np.mean([r["bpp"] for r in row])) for row in rows], [float(np.mean([r["psnr"] for r in row])) for row in rows]


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--model", default=str(_common.ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors"))
    parser.add_argument("--images", default="kodim01,kodim05,kodim08,kodim14,kodim19,kodim23")
    parser.add_argument("--crop", default="384x256", help="centre crop W x H (0: full images)")
    parser.add_argument("--levels", default="0,21,42,63")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--out", default=str(_common.ROOT / "reports" / "sga"))
    args = _common.parse(parser, argv, model=lambda: _common.smoke_model("mbt2018_mean_vr,codec.N=16,codec.M=24"),
                         images="kodim01", crop="0", levels="0,63", iterations=2, out=lambda: str(_common.smoke_scratch() / "sga"))
    data = _common.data_dir(args.smoke)
    torch.set_num_threads(1)
    width, height = (0, 0) if args.crop == "0" else map(int, args.crop.split("x"))
    levels = [int(v) for v in args.levels.split(",")]
    codec = load_model(args.model)
    points = []
    for name in args.images.split(","):
        image = _crop(np.asarray(Image.open(data / "kodak" / f"{name}.png").convert("RGB")), width, height)
        for level in levels:
            row = {"image": name, "level": level, "plain": _point(codec, image, level, 0),
                   "refined": _point(codec, image, level, args.iterations)}
            points.append(row)
            print(json.dumps(row), flush=True)
    plain, refined = _summary(points, levels, "plain"), _summary(points, levels, "refined")
    gain = {method: bd(*plain, *refined, method) for method in ("cubic", "pchip")}
    reference_dir = data / "reference_rd" / "sga" / "kodak"
    reference = {}
    if reference_dir.is_dir():  # the published points (not in a smoke run's data)
        base, sga = read_curve(reference_dir / "mbt2018-psnr.csv"), read_curve(reference_dir / "sga-psnr.csv")
        reference = {method: bd(base.bpp, base.quality("psnr-rgb"), sga.bpp, sga.quality("psnr-rgb"), method)
                     for method in ("cubic", "pchip")}
    plain_s = sum(p["plain"]["encode_s"] for p in points)
    refined_s = sum(p["refined"]["encode_s"] for p in points)
    summary = {
        "model": Path(args.model).name, "images": args.images.split(","), "crop": args.crop, "levels": levels,
        "iterations": args.iterations, "threads": 1,
        "plain": {"bpp": plain[0], "psnr": plain[1]}, "refined": {"bpp": refined[0], "psnr": refined[1]},
        "bd_rate": {m: r.bd_rate for m, r in gain.items()}, "bd_psnr": {m: r.bd_psnr for m, r in gain.items()},
        "reference_bd_rate_2000_iterations": {m: r.bd_rate for m, r in reference.items()},
        "encode_seconds": {"plain": plain_s, "refined": refined_s, "ratio": refined_s / plain_s},
        "points": points,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    _common.emit(args, summary if args.json else {k: v for k, v in summary.items() if k != "points"})


if __name__ == "__main__":
    main()
