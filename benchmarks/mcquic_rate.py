"""McQuic on Kodak: bpp from real file bytes next to the fixed-rate formula and the estimate from
the model's tracked code frequencies, plus RGB PSNR of the decoded images.

The fixed rate is ``sum_l m log2(K_l) / (8 2^(l+1))^2`` (uniform tables); the EMA estimate is the
entropy of each codebook's stored counts times the number of codes it writes, over the pixels
(``-sum_l sum_m n_l sum_k p_mk log2 p_mk / (H W)``), which is what an ideal coder would spend if
the image's codes followed the training statistics. The file's bytes include the container.

Usage: OMP_NUM_THREADS=1 python benchmarks/mcquic_rate.py MODEL [--images N] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import load_model
from codeclab.measures import bits_per_pixel, psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def ema_estimate_bpp(codec, height: int, width: int) -> float:
    """Ideal bits per pixel under the stored counts (padded size as the coder codes it)."""
    pad = codec.downsampling
    padded_h, padded_w = -(-height // pad) * pad, -(-width // pad) * pad
    bits = 0.0
    for level, counts in enumerate(lv.counts for lv in codec.quantizer.levels):
        p = counts.double() / counts.double().sum(-1, keepdim=True)
        entropy = float(-(p * p.log2()).sum())  # summed over the m codebooks
        positions = (padded_h // (codec.stride * 2 ** (level + 1))) * (padded_w // (codec.stride * 2 ** (level + 1)))
        bits += positions * entropy
    return bits / (height * width)


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("model")
    parser.add_argument("--images", type=int, default=24)
    args = _common.parse(parser, argv, model=lambda: _common.smoke_model("mcquic_tiny"), images=1)
    codec = load_model(args.model)
    rows = []
    for path in sorted((_common.data_dir(args.smoke) / "kodak").glob("kodim*.png"))[: args.images]:
        image = np.asarray(Image.open(path).convert("RGB"))
        data = encode_image(codec, image)
        decoded = decode_image(data, codec)
        mse = np.mean((decoded.astype(np.float64) - image) ** 2) / 255**2
        rows.append({"image": path.stem, "bpp": bits_per_pixel(len(data), *image.shape[:2]),
                     "ema_estimate_bpp": ema_estimate_bpp(codec, *image.shape[:2]), "psnr": float(psnr(mse))})
    summary = {"model": Path(args.model).name, "m": codec.quantizer.m, "k": list(codec.quantizer.k),
               "fixed_rate_bpp": codec.fixed_rate, "images": len(rows),
               "bpp": float(np.mean([r["bpp"] for r in rows])),
               "ema_estimate_bpp": float(np.mean([r["ema_estimate_bpp"] for r in rows])),
               "psnr": float(np.mean([r["psnr"] for r in rows])), "per_image": rows}
    _common.emit(args, summary if args.json else {k: v for k, v in summary.items() if k != "per_image"})


if __name__ == "__main__":
    main()
