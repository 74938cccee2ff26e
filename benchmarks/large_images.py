"""Large images: peak memory and time of tiled coding, and the RD cost of tiling.

The test image is a mosaic of Kodak photographs (each 768x512, flipped alternately so the seams
are continuous), ``--megapixels`` in size (default 24: 6144x3840 plus a partial row and column
of tiles). ``codeclab encode`` and ``codeclab decode`` run as separate processes (one thread)
and the peak resident memory of each is read from the kernel (``ru_maxrss``).

The RD cost of tiling is measured on a smaller crop (``--crop``, default 2048x2048, 4 MP) that
also codes as one tile: bpp and RGB PSNR with ``--tile`` tiles against one tile, same model.
``--model`` should be a trained hyperprior model file (memory does not depend on the weights,
the RD cost does).

Usage: python benchmarks/large_images.py --model M.safetensors [--megapixels 24 100] [--tile 1024] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def mosaic(megapixels: float, kodak: Path) -> np.ndarray:
    """A ``megapixels`` image (3:2) tiled from the Kodak landscape photographs (those of the first's size)."""
    from codeclab.data.images import list_images, read_image

    photos = [read_image(path, notice=None) for path in list_images(kodak)]
    ph, pw = photos[0].shape[:2]
    photos = [p for p in photos if p.shape[:2] == (ph, pw)]
    width = int(math.sqrt(megapixels * 1e6 * 3 / 2))
    height = int(megapixels * 1e6 / width)
    rows, columns = -(-height // ph), -(-width // pw)
    out = np.empty((rows * ph, columns * pw, 3), np.uint8)
    for r in range(rows):
        for c in range(columns):
            photo = photos[(r * columns + c) % len(photos)]
            out[r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] = photo[:: 1 - 2 * (r % 2), :: 1 - 2 * (c % 2)]
    return np.ascontiguousarray(out[:height, :width])


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[24])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--crop", type=int, default=2048, help="side of the tiling-cost crop (0: not measured)")
    parser.add_argument("--level", type=int, default=None, help="rate level of a variable-rate model")
    args = _common.parse(parser, argv, model=lambda: _common.smoke_model("tiny"), megapixels=[0.05], tile=64, crop=0)
    kodak = _common.data_dir(args.smoke) / "kodak"
    from codeclab.evaluation.metrics import psnr_rgb

    rate = [] if args.level is None else ["--level", str(args.level)]
    results = {"model": str(args.model), "tile": args.tile, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for megapixels in args.megapixels:
            image = mosaic(megapixels, kodak)
            Image.fromarray(image).save(work / "in.png", compress_level=1)
            enc_s, enc_gb = _common.run_cli("encode", str(work / "in.png"), "-m", str(args.model), "-o", str(work / "in.clab"),
                                "--tile", str(args.tile), *rate)
            dec_s, dec_gb = _common.run_cli("decode", str(work / "in.clab"), "-o", str(work / "out.png"), "-m", str(args.model))
            decoded = np.asarray(Image.open(work / "out.png"))
            results["sizes"].append({
                "megapixels": image.shape[0] * image.shape[1] / 1e6, "size": list(image.shape[:2]),
                "encode_s": enc_s, "encode_peak_gb": enc_gb, "decode_s": dec_s, "decode_peak_gb": dec_gb,
                "bpp": 8 * (work / "in.clab").stat().st_size / (image.shape[0] * image.shape[1]), "psnr": psnr_rgb(image, decoded),
            })
        if args.crop:
            crop = mosaic(24, kodak)[: args.crop, : args.crop]
            Image.fromarray(crop).save(work / "crop.png")
            cost = {}
            for name, tile in (("tiled", args.tile), ("one_tile", args.crop)):
                _common.run_cli("encode", str(work / "crop.png"), "-m", str(args.model), "-o", str(work / f"{name}.clab"), "--tile", str(tile), *rate)
                _common.run_cli("decode", str(work / f"{name}.clab"), "-o", str(work / f"{name}.png"), "-m", str(args.model))
                cost[name] = {"bpp": 8 * (work / f"{name}.clab").stat().st_size / crop.shape[0] / crop.shape[1],
                              "psnr": psnr_rgb(crop, np.asarray(Image.open(work / f"{name}.png")))}
            cost["bpp_increase_pct"] = 100 * (cost["tiled"]["bpp"] / cost["one_tile"]["bpp"] - 1)
            cost["psnr_change_db"] = cost["tiled"]["psnr"] - cost["one_tile"]["psnr"]
            results["tiling_cost"] = {"crop": args.crop, **cost}
    _common.emit(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
