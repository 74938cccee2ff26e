"""RBQE on Kodak: the gain of the post-filter after JPEG and after the shipped learned model.

Every Kodak image is coded with Pillow's JPEG at QF 10-50 (the paper's qualities) and with the
shipped variable-rate model at ``--levels``, to real bytes; each decoded image is enhanced by the
RBQE post-filter file (its early exits, as ``codeclab decode --postfilter``) and measured before
and after: Y-PSNR (BT.601 full range: what RBQE enhances, the paper's metric), RGB PSNR and
MS-SSIM, the exit taken, and the filter's wall time (one thread). The same pass gives exit 5's
output (the fixed-depth network), and the early-exit path alone is timed on ``--timed-images``
images per setting, so the early exits' saving is measured side by side. BD-rates (cubic /
PCHIP) compare each codec with and without the filter on the same bytes. Multiply-adds per
pixel of each exit are counted with ``torch.utils.flop_counter`` (convolutions).

Usage: OMP_NUM_THREADS=1 python benchmarks/rbqe_kodak.py --postfilter logs/rbqe_cpu/model.safetensors \\
           [--model models/zoo/mbt2018_mean_vr.safetensors] [--json-file reports/rbqe/kodak.json] [--smoke]
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codeclab.data.images import list_images, read_image
from codeclab.evaluation import metrics
from codeclab.evaluation.bd_rate import bd
from codeclab.formats.image_file import decode_image, encode_image
from codeclab.formats.model_file import load_model
from codeclab.measures import bits_per_pixel
from codeclab.formats.network_file import load_postfilter
from codeclab.training.rbqe import JPEG_QUALITIES, jpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def _jpeg_bytes(image: np.ndarray, quality: int) -> int:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.tell()


def _measures(reference: np.ndarray, decoded: np.ndarray) -> dict:
    m = metrics.measure(reference, decoded)
    return {"psnr_y": m["psnr-y"], "psnr_rgb": m["psnr-rgb"], "ms_ssim": m["ms-ssim-rgb"]}


def run(images, network, codec, levels, timed_images: int) -> dict:
    points = []
    settings = [("JPEG", q) for q in JPEG_QUALITIES] + ([("learned", lv) for lv in levels] if codec else [])
    for name, image in images:
        for kind, setting in settings:
            if kind == "JPEG":
                decoded, nbytes = jpeg(image, setting), _jpeg_bytes(image, setting)
            else:
                data = encode_image(codec, image, setting)
                decoded, nbytes = np.asarray(decode_image(data, codec)), len(data)
            # Every exit once: the early-exit decision and exit 5's output (the fixed-depth network).
            enhanced = network.enhance(decoded, all_exits=True)
            point = {"image": name, "codec": kind, "setting": setting, "bpp": bits_per_pixel(nbytes, *image.shape[:2]),
                     "before": _measures(image, decoded), "after": _measures(image, enhanced.image),
                     "exit5": _measures(image, enhanced.last), "exit": enhanced.exit, "scores": enhanced.scores,
                     "exit5_s": enhanced.seconds}
            if len([p for p in points if (p["codec"], p["setting"]) == (kind, setting)]) < timed_images:
                point["filter_s"] = network.enhance(decoded).seconds  # the early-exit path, timed for real
            points.append(point)
    return summarise(points, network)


def summarise(points: list[dict], network) -> dict:
    kmacs = network.exit_kmacs_per_pixel()
    rows = {}
    for p in points:
        rows.setdefault((p["codec"], p["setting"]), []).append(p)
    table = []
    for (kind, setting), group in rows.items():
        mean = lambda f, group=group: float(np.mean([f(p) for p in group]))  # noqa: E731
        table.append({
            "codec": kind, "setting": setting, "bpp": mean(lambda p: p["bpp"]),
            **{f"{stage}_{m}": mean(lambda p, s=stage, m=m: p[s][m]) for stage in ("before", "after", "exit5")
               for m in ("psnr_y", "psnr_rgb", "ms_ssim")},
            "mean_exit": mean(lambda p: p["exit"]), "exits": [sum(p["exit"] == k for p in group) for k in range(1, 6)],
            "kmac_per_pixel": mean(lambda p: kmacs[p["exit"] - 1]),
            "filter_s": float(np.mean([p["filter_s"] for p in group if "filter_s" in p])),
            "exit5_s": mean(lambda p: p["exit5_s"]),
        })
    bd_rates = {}
    for kind in dict.fromkeys(r["codec"] for r in table):
        curve = [r for r in table if r["codec"] == kind]
        rate = [r["bpp"] for r in curve]
        for metric in ("psnr_y", "psnr_rgb"):
            for method in ("cubic", "pchip"):
                result = bd(rate, [r[f"before_{metric}"] for r in curve], rate, [r[f"after_{metric}"] for r in curve], method)
                bd_rates[f"{kind}+RBQE vs {kind}, {metric}, {method}"] = (
                    None if result.bd_rate is None else round(result.bd_rate, 2))
    return {"table": table, "bd_rate_percent": bd_rates, "exit_kmac_per_pixel": kmacs, "threshold": network.threshold,
            "codec_type": network.codec_type, "images": len({p["image"] for p in points}), "threads": torch.get_num_threads(),
            "points": points}


def _text(result: dict) -> str:
    lines = [f"RBQE ({result['codec_type']} IQAM, T = {result['threshold']}) on {result['images']} images, "
             f"{result['threads']} thread(s); exits' kMAC/pixel: " + ", ".join(f"{k:.1f}" for k in result["exit_kmac_per_pixel"]),
             "codec setting  bpp    Y-PSNR before -> after (exit 5)   RGB PSNR before -> after   MS-SSIM before -> after   "
             "mean exit  exits 1-5          filter s (exit 5 s)"]
    for r in result["table"]:
        lines.append(f"{r['codec']:7s} {r['setting']:>3}  {r['bpp']:.3f}  {r['before_psnr_y']:.2f} -> {r['after_psnr_y']:.2f} "
                     f"({r['exit5_psnr_y']:.2f})   {r['before_psnr_rgb']:.2f} -> {r['after_psnr_rgb']:.2f}   "
                     f"{r['before_ms_ssim']:.4f} -> {r['after_ms_ssim']:.4f}   {r['mean_exit']:.2f}  {r['exits']}  "
                     f"{r['filter_s']:.2f} ({r['exit5_s']:.2f})")
    lines += [f"BD-rate {name}: {value}%" for name, value in result["bd_rate_percent"].items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--postfilter", required=True, help="an RBQE post-filter file (train.py experiment=rbqe)")
    parser.add_argument("--model", default=str(_common.ROOT / "models/zoo/mbt2018_mean_vr.safetensors"),
                        help="a variable-rate model file ('' : JPEG only)")
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 24, 40, 56])
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--timed-images", type=int, default=6,
                        help="images per setting whose early-exit path is also run alone, for its wall time")
    args = _common.parse(parser, argv, postfilter=_smoke_postfilter, model="", max_images=1)
    images = [(Path(p).stem, read_image(p, notice=None)) for p in list_images(str(_common.data_dir(args.smoke) / "kodak"))]
    images = images[: args.max_images]
    codec = load_model(args.model) if args.model else None
    start = time.perf_counter()
    result = run(images, load_postfilter(args.postfilter), codec, args.levels if codec else [], args.timed_images)
    result["seconds"] = time.perf_counter() - start
    _common.emit(args, result, _text(result))


def _smoke_postfilter() -> str:
    from codeclab.formats.network_file import save_network
    from codeclab.postfilters import RBQE

    path = _common.smoke_scratch() / "rbqe.safetensors"
    torch.manual_seed(0)
    save_network(RBQE(), "postfilter", path)
    return str(path)


if __name__ == "__main__":
    main()
