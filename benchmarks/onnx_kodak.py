"""ONNX export checked on Kodak: ``codeclab export --onnx`` of a model, each network run by ONNX
Runtime against the same float32 network in PyTorch (:func:`codeclab.formats.onnx_export.max_abs_differences`).

Prints, per image and rate level, the largest absolute difference of each network's output
(and the largest absolute output, for scale); ``h_s_vs_integer`` compares ``h_s.onnx`` with the
exact integer ``h_s`` that decoding uses.

Usage: python benchmarks/onnx_kodak.py [--model M] [--images kodim01 kodim05 ...] [--levels 0 63] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = Path(os.environ.get("CODECLAB_DATA", ROOT.parent / "shared" / "data")) / "kodak"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors")
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim05", "kodim15", "kodim20"])
    parser.add_argument("--levels", nargs="+", type=int, default=[0, 63], help="rate levels of y_hat (variable-rate models)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from codeclab.data.images import read_image, to_tensor
    from codeclab.formats.model_file import load_model
    from codeclab.formats.onnx_export import export_onnx, max_abs_differences

    codec = load_model(args.model)
    levels = args.levels if codec.rate_levels else [None]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(codec, folder)
        for image in args.images:
            x = to_tensor(read_image(KODAK / f"{image}.png"))[None]
            for level in levels:
                rows.append({"image": image, "level": level, "networks": max_abs_differences(codec, folder, x, level)})
                if not args.json:
                    cells = ", ".join(f"{k} {v['max_abs_diff']:.2e} (of {v['max_abs_value']:.3g})" for k, v in rows[-1]["networks"].items())
                    print(f"{image} level {level}: {cells}", flush=True)
    print(json.dumps({"model": str(args.model), "rows": rows}, indent=2) if args.json else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
