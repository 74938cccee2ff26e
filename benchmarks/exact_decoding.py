"""Cost of exact decoding on a trained model: rate cost of the integer entropy-parameter networks
and quality cost of bf16 transforms, side by side in one run on Kodak, with real file bytes.

Three ways to code each image at each rate level:

* ``float``: the float model (``--model``; its h_s in float32), float32 NCHW transforms, the reference;
* ``integer``: the same weights converted to integer networks (``codeclab export``'s conversion,
  no fine-tune), float32 NCHW transforms;
* ``integer-bf16``: the integer model with the default coding settings on this CPU (bf16,
  channels-last analysis and synthesis), what ``codeclab encode/decode`` run.

Reported: the BD-rate of ``integer`` against ``float`` (the rate cost; target <= 0.5%), the mean
PSNR change of decoding the *same* ``integer`` files with a bf16 instead of a float32 synthesis
(the quality cost of bf16 synthesis; target <= 0.05 dB), and the BD-rate of ``integer-bf16``
against ``float`` (everything the default settings change). RGB PSNR of 8-bit reconstructions.

Usage: python benchmarks/exact_decoding.py -m FLOAT_MODEL [--levels 0,9,...] [--images DIR] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None) -> int:
    from codeclab.data.images import list_images, read_image
    from codeclab.evaluation.bd_rate import bd
    from codeclab.evaluation.metrics import psnr_rgb
    from codeclab.formats.image_file import decode_image, encode_image
    from codeclab.formats.model_file import export_model, load_model
    from codeclab.measures import bits_per_pixel

    parser = _common.parser(__doc__)
    parser.add_argument("-m", "--model", required=True, help="a model file with float entropy-parameter networks")
    parser.add_argument("--images", type=Path, default=_common.DATA / "kodak")
    parser.add_argument("--levels", default="0,9,18,27,36,45,54,63")
    parser.add_argument("--threads", type=int, default=1)
    args = _common.parse(parser, argv, model=lambda: _common.smoke_model("mbt2018_mean_vr,codec.N=16,codec.M=24", "float"),
                         images=lambda: _common.smoke_data() / "kodak", levels="0,21,42,63")
    torch.set_num_threads(args.threads)
    levels = [int(v) for v in args.levels.split(",")]

    reference = load_model(args.model)
    if reference.entropy_model.portable:
        raise SystemExit(f"{args.model} already has integer entropy parameters; pass the float model")
    reference.configure_transforms(None, False)
    with tempfile.TemporaryDirectory() as folder:
        converted = Path(folder) / "integer.safetensors"
        export_model(load_model(args.model), converted, reference_dtype(args.model))
        exact = load_model(converted)
    fast_settings = (exact.transform_dtype, exact.memory_format == torch.channels_last)
    ways = {name: {level: {"bytes": [], "psnr": [], "pixels": []} for level in levels}
            for name in ("float", "integer", "integer-bf16", "integer-bf16-synthesis")}
    images = list_images(args.images)
    start = time.perf_counter()
    for path in images:
        image = read_image(path, notice=None)
        for level in levels:
            point = {name: points[level] for name, points in ways.items()}

            def record(name, data, decoded, point=point, image=image):
                point[name]["bytes"].append(len(data))
                point[name]["pixels"].append(image.shape[0] * image.shape[1])
                point[name]["psnr"].append(psnr_rgb(image, decoded))

            data = encode_image(reference, image, level)
            record("float", data, decode_image(data, reference))
            exact.configure_transforms(None, False)
            data = encode_image(exact, image, level)
            record("integer", data, decode_image(data, exact))
            exact.configure_transforms(*fast_settings)
            record("integer-bf16-synthesis", data, decode_image(data, exact))
            fast = encode_image(exact, image, level)
            record("integer-bf16", fast, decode_image(fast, exact))
        print(f"{path.name} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    def curve(name):
        points = ways[name]
        bpp = [statistics.mean(bits_per_pixel(b, 1, p) for b, p in zip(points[lv]["bytes"], points[lv]["pixels"]))
               for lv in levels]
        return bpp, [statistics.mean(points[lv]["psnr"]) for lv in levels]

    curves = {name: curve(name) for name in ways}
    synthesis_cost = [a - b for a, b in zip(curves["integer-bf16-synthesis"][1], curves["integer"][1])]
    summary = {
        "model": args.model, "images": len(images), "levels": levels, "threads": args.threads,
        "fast_settings": {"dtype": str(fast_settings[0]), "channels_last": fast_settings[1]},
        "curves": {name: {"bpp": c[0], "psnr": c[1]} for name, c in curves.items()},
        # null when the curves allow no BD-rate (e.g. random weights)
        "rate_cost_bd_rate_percent": bd(*curves["float"], *curves["integer"]).bd_rate,
        "bf16_synthesis_psnr_change_db": {"mean": statistics.mean(synthesis_cost), "worst": min(synthesis_cost)},
        "default_settings_bd_rate_percent": bd(*curves["float"], *curves["integer-bf16"]).bd_rate,
        "seconds": round(time.perf_counter() - start, 1),
    }
    _common.emit(args, summary)
    return 0


def reference_dtype(path: str) -> str:
    """The weights dtype the model file was written with (the converted file keeps it)."""
    from codeclab.formats.model_file import read_metadata

    return read_metadata(path).get("weights_dtype", "float32")


if __name__ == "__main__":
    sys.exit(main())
