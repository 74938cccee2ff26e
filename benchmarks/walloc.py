"""WaLLoC on Kodak, side by side with the foundation's hyperprior codec, in one run.

For every Kodak image and every codec: ``encode_image`` (padding, transform, quantisation,
entropy/lossless coding, container) and ``decode_image`` (the reverse, to uint8) wall seconds,
the file's bytes, bpp = 8 * bytes / (H * W) and PSNR of the decoded uint8 image. The codecs
alternate image by image, so they meet the same background load. Reported per codec: median
seconds per image, mean bpp and PSNR over the images, the compression ratio (24 bpp of 8-bit
RGB / bpp) and, for WaLLoC, the dimension reduction ``3 * 4**J / M``. For a bounded-bottleneck
WaLLoC the same latents are also packed as PNG and WebP and their mean bpp reported, next to
the rate model's estimate (``-log2 p``) that training minimised.

A reference given as a codec config name (``mbt2018_mean``) runs at random weights: its
seconds are meaningful, its bpp/PSNR are not (reported as null).

Usage: python benchmarks/walloc.py WALLOC_MODEL [WALLOC_MODEL ...] [--reference mbt2018_mean|MODEL]
           [--images N] [--threads T] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def load(spec: str):
    from codeclab.formats.model_file import load_model

    if spec.endswith(".safetensors"):
        return load_model(spec), True
    return _common.compose_codec(spec).eval(), False


@torch.no_grad()
def latent_format_bpp(codec, image: np.ndarray) -> dict:
    """bpp of the bounded latents as PNG and as WebP, and the rate model's estimate (the first
    mapping, bounded_v1, trains one; the paper's mapping has none)."""
    from codeclab.entropy_models.bounded import pack_latent_image
    from codeclab.formats.file_coding import codec_input

    bottleneck = codec.entropy_model
    y = codec.analysis(codec_input(image, codec.downsampling))
    stored = bottleneck.integers(y)[0] + bottleneck.offset
    pixels = image.shape[0] * image.shape[1]
    likelihoods = bottleneck.eval()(y)["likelihoods"].values()
    rates = {f"{fmt}_bpp": 8 * len(pack_latent_image(stored, fmt)) / pixels for fmt in ("png", "webp", "webp_rgb")}
    if likelihoods:
        rates["estimate_bpp"] = sum(-torch.log2(lik).sum().item() for lik in likelihoods) / pixels
    return rates


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("models", nargs="+", help="WaLLoC model files")
    parser.add_argument("--reference", default="mbt2018_mean", help="hyperprior model file or codec config name")
    parser.add_argument("--images", type=int, default=24, help="first N Kodak images")
    parser.add_argument("--threads", type=int, default=None)
    args = _common.parse(parser, argv, models=lambda: [_common.smoke_model("walloc_tiny")], reference="tiny", images=1)
    if args.threads:
        torch.set_num_threads(args.threads)

    from codeclab.data.images import list_images, read_image
    from codeclab.evaluation.metrics import psnr_rgb
    from codeclab.measures import bits_per_pixel
    from codeclab.formats.image_file import decode_image, encode_image

    kodak = _common.data_dir(args.smoke) / "kodak"
    images = [(p.name, read_image(p, notice=None)) for p in list_images(kodak)[: args.images]]
    codecs = {Path(m).stem: load(m) for m in args.models}
    codecs[Path(args.reference).stem] = load(args.reference)
    rows = {name: [] for name in codecs}
    for _, image in images[:1]:  # warm-up
        for codec, _ in codecs.values():
            decode_image(encode_image(codec, image), codec)
    for image_name, image in images:
        for name, (codec, trained) in codecs.items():
            start = time.perf_counter()
            data = encode_image(codec, image)
            enc_s = time.perf_counter() - start
            start = time.perf_counter()
            decoded = decode_image(data, codec)
            dec_s = time.perf_counter() - start
            row = {"image": image_name, "enc_s": enc_s, "dec_s": dec_s}
            if trained:
                row.update(bpp=bits_per_pixel(len(data), *image.shape[:2]), psnr=psnr_rgb(image, decoded))
            if codec.codec_id == "walloc" and codec.config["bottleneck"] == "bounded":
                row.update(latent_format_bpp(codec, image))
            rows[name].append(row)

    results = {}
    for name, (codec, trained) in codecs.items():
        r = rows[name]
        summary = {"enc_s": statistics.median(x["enc_s"] for x in r), "dec_s": statistics.median(x["dec_s"] for x in r)}
        summary["bpp"] = float(np.mean([x["bpp"] for x in r])) if trained else None
        summary["psnr"] = float(np.mean([x["psnr"] for x in r])) if trained else None
        summary["compression_ratio"] = 24 / summary["bpp"] if trained else None
        if codec.codec_id == "walloc":
            summary["dimension_reduction"] = 3 * 4 ** codec.config["levels"] / codec.config["latent_channels"]
            summary["bottleneck"] = codec.config["bottleneck"]
            for key in ("png_bpp", "webp_bpp", "webp_rgb_bpp", "estimate_bpp"):
                if key in r[0]:
                    summary[key] = float(np.mean([x[key] for x in r]))
        results[name] = summary
    reference = results[Path(args.reference).stem]
    for summary in results.values():
        summary["enc_speedup_vs_reference"] = reference["enc_s"] / summary["enc_s"]
        summary["dec_speedup_vs_reference"] = reference["dec_s"] / summary["dec_s"]
    if args.json or args.json_file:
        _common.emit(args, results)
        return 0
    print(f"{len(images)} Kodak images, {torch.get_num_threads()} threads; seconds are medians per image")
    header = f"{'codec':24s} {'enc s':>7s} {'dec s':>7s} {'enc x':>6s} {'bpp':>6s} {'PSNR':>6s} {'ratio':>6s} {'dim red':>7s}"
    print(header)
    for name, s in results.items():
        fmt = lambda v, spec: format(v, spec) if v is not None else "-".rjust(len(format(0.0, spec)))  # noqa: E731
        print(f"{name:24s} {s['enc_s']:7.3f} {s['dec_s']:7.3f} {s['enc_speedup_vs_reference']:6.1f} {fmt(s['bpp'], '6.3f')} "
              f"{fmt(s['psnr'], '6.2f')} {fmt(s['compression_ratio'], '6.1f')} {fmt(s.get('dimension_reduction'), '7.1f')}")
        if "png_bpp" in s:
            estimate = f", rate model {s['estimate_bpp']:.3f} bpp" if "estimate_bpp" in s else ""
            print(f"{'':24s} latents as PNG {s['png_bpp']:.3f} bpp, WebP {s['webp_bpp']:.3f} bpp, "
                  f"WebP RGB planes {s['webp_rgb_bpp']:.3f} bpp{estimate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
