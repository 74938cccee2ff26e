"""ONNX export checked on Kodak: ``codeclab export --onnx`` of a model, each network run by ONNX
Runtime against the same float32 network in PyTorch (:func:`codeclab.formats.onnx_export.max_abs_differences`).

Prints, per image and rate level, the largest absolute difference of each network's output
(and the largest absolute output, for scale); ``h_s_vs_integer`` compares ``h_s.onnx`` with the
exact integer ``h_s`` that decoding uses.

Usage: python benchmarks/onnx_kodak.py [--model M] [--images kodim01 kodim05 ...] [--levels 0 63] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--model", type=Path, default=_common.ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors")
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim05", "kodim15", "kodim20"])
    parser.add_argument("--levels", nargs="+", type=int, default=[0, 63], help="rate levels of y_hat (variable-rate models)")
    args = _common.parse(parser, argv, model=lambda: Path(_common.smoke_model("tiny")), images=["kodim01"])
    kodak = _common.data_dir(args.smoke) / "kodak"

    from codeclab.data.images import read_image
    from codeclab.formats.file_coding import codec_input
    from codeclab.formats.model_file import load_model
    from codeclab.formats.onnx_export import export_onnx, max_abs_differences

    codec = load_model(args.model)
    levels = args.levels if codec.rate_levels else [None]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(codec, folder)
        for image in args.images:
            x = codec_input(read_image(kodak / f"{image}.png"), codec.downsampling)  # padded as for coding
            for level in levels:
                rows.append({"image": image, "level": level, "networks": max_abs_differences(codec, folder, x, level)})
    lines = [f"{r['image']} level {r['level']}: " + ", ".join(f"{k} {v['max_abs_diff']:.2e} (of {v['max_abs_value']:.3g})"
                                                             for k, v in r["networks"].items()) for r in rows]
    _common.emit(args, {"model": str(args.model), "rows": rows}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
