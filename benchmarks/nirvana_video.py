"""NIRVANA's rate-distortion and coding time beside STEM, all-intra and live x264/x265, same frames.

For each sequence (the first ``--frames`` frames of basketballpass and of parkjoy_480x270.y4m,
which has 10), every point is a real file measured on its decoded frames with the video
evaluation's protocol (:mod:`codeclab.evaluation.video`: bpp from file bytes, RGB and 6:1:1 YUV
PSNR, RGB MS-SSIM):

* **NIRVANA** (``--configs``: ``configs/implicit/nirvana.yaml``, the paper's SIREN layers, and
  ``nirvana_gelu.yaml``, the GELU deviation) at each rate level:
  :func:`codeclab.implicit.encode_implicit` (fitting, timed) and :func:`decode_implicit` (timed).
* **STEM** (``--stem``) at intra period ``--intra-period`` and **all-intra** (the same file's image
  codec), levels 8, 24, 40, 56, through :func:`learned_point`.
* **x264 / x265** (``--preset``), constant QP 22-42, the same intra period, one thread.

BD-rates (RGB PSNR, cubic, over the overlapping range) of NIRVANA against each, where the curves
overlap. One thread throughout.

Usage: python benchmarks/nirvana_video.py [--frames 30] [--json-file reports/video/nirvana.json] [--smoke]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

STEM_LEVELS = (8, 24, 40, 56)
QPS = (22, 27, 32, 37, 42)


def nirvana_points(sequence, config, levels) -> list[dict]:
    from codeclab.data.colour import rgb_to_yuv420
    from codeclab.evaluation.video import MATRIX, RANGE, frame_metrics, summarise
    from codeclab.formats.video_file import frame_types
    from codeclab.implicit.container import unpack_implicit
    from codeclab.implicit.video_file import decode_implicit, encode_implicit

    points = []
    for level in levels:
        encoded = encode_implicit(sequence.clip, config, level)
        started = time.perf_counter()
        frames = decode_implicit(encoded.data).clip().frames
        decode_seconds = time.perf_counter() - started
        metrics = [frame_metrics(sequence, t, rgb, rgb_to_yuv420(rgb, MATRIX, RANGE)) for t, rgb in enumerate(frames)]
        kinds = frame_types(len(frames), 1)
        point = summarise(sequence, kinds, [0] * len(kinds), len(encoded.data), metrics)
        header, _ = unpack_implicit(encoded.data)
        point.update({"level": level, "rate_weight": config.rate_weights[level], "encode_seconds": encoded.seconds,
                      "decode_seconds": decode_seconds, "group_bytes": [sum(lengths) for lengths, _ in header.groups],
                      "group_steps": [fit.steps for fit in encoded.fits],
                      "group_fit_psnr": [round(fit.psnr, 3) for fit in encoded.fits]})
        for key in ("bpp_I", "bpp_P", "frames_I", "frames_P"):
            point.pop(key)
        points.append(point)
        print(f"  siren={config.siren} level {level}: {point['bpp']:.4f} bpp, {point['psnr-rgb']:.2f} dB, encode {encoded.seconds:.0f} s, "
              f"decode {decode_seconds:.2f} s", file=sys.stderr, flush=True)
    return points


def stem_points(sequence, model: Path, intra_period: int) -> dict[str, list[dict]]:
    from codeclab.evaluation.video import learned_point
    from codeclab.formats.model_file import load_model
    from codeclab.formats.video_file import analysis_of_frames

    codec = load_model(model)
    analysed = analysis_of_frames(codec, sequence.clip)
    out = {}
    for name, period in (("stem", intra_period), ("all-intra", 1)):
        out[name] = []
        for level in STEM_LEVELS:
            started = time.perf_counter()
            point = learned_point(codec, sequence, period, level, analysed)
            point["encode_seconds"] = time.perf_counter() - started
            out[name].append(point)
    return out


def bd_rates(points: dict[str, list[dict]]) -> dict[str, dict[str, float | None]]:
    """BD-rate (RGB PSNR) of each NIRVANA entry against every other codec; None where the curves share no range."""
    from codeclab.evaluation.bd_rate import bd_rate

    out = {}
    for test_name, test in points.items():
        if not test_name.startswith("nirvana"):
            continue
        out[test_name] = {}
        for name, anchor in points.items():
            if name.startswith("nirvana"):
                continue
            try:
                value = bd_rate([p["bpp"] for p in anchor], [p["psnr-rgb"] for p in anchor], [p["bpp"] for p in test],
                                [p["psnr-rgb"] for p in test])
            except Exception:  # noqa: BLE001  (curves that share no quality range have no BD-rate)
                value = None
            out[test_name][name] = None if value is None or not np.isfinite(value) else round(float(value), 2)
    return out


def main(argv=None) -> None:
    from codeclab.evaluation.video import anchor_point, ffmpeg_versions, load_sequence
    from codeclab.implicit.nirvana import NirvanaConfig
    from codeclab.implicit.video_file import load_config

    parser = _common.parser(__doc__)
    parser.add_argument("--frames", type=int, default=30, help="first frames of each sequence")
    parser.add_argument("--sequences", nargs="+", default=["video/basketballpass", "video/parkjoy_480x270.y4m"])
    parser.add_argument("--configs", type=Path, nargs="+",
                        default=[_common.ROOT / "configs/implicit/nirvana.yaml", _common.ROOT / "configs/implicit/nirvana_gelu.yaml"],
                        help="NIRVANA encoder configs; each gives the points 'nirvana:<file stem>'")
    parser.add_argument("--levels", type=int, nargs="+", default=None, help="NIRVANA rate levels (default: all)")
    parser.add_argument("--stem", default=str(_common.ROOT / "models/stem.safetensors"), help="STEM model file ('': skip)")
    parser.add_argument("--intra-period", type=int, default=12)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--qps", type=int, nargs="*", default=list(QPS), help="x264/x265 QPs (none: no anchors)")
    args = _common.parse(parser, argv, frames=3, sequences=["video/basketballpass"], stem="", qps=[32], levels=[0])
    torch.set_num_threads(1)
    configs = {f"nirvana:{path.stem}": load_config(path) for path in args.configs}
    if args.smoke:
        configs = {"nirvana:smoke": NirvanaConfig(patch=8, group_size=2, channels=4, stages=1, hidden=8, frequencies=2,
                                                  first_steps=5, group_steps=3, batch_patches=8)}
    data = _common.data_dir(args.smoke)
    results = {"configs": {name: config.as_dict() for name, config in configs.items()}, "frames": args.frames,
               "intra_period": args.intra_period, "preset": args.preset,
               "ffmpeg": ffmpeg_versions(), "threads": 1, "sequences": {}}
    for relative in args.sequences:
        sequence = load_sequence(data / relative, args.frames)
        print(f"{sequence.name}: {len(sequence.clip.frames)} frames", file=sys.stderr, flush=True)
        points = {}
        for name, config in configs.items():
            levels = args.levels if args.levels is not None else list(range(len(config.rate_weights)))
            points[name] = nirvana_points(sequence, config, levels)
        if args.stem:
            points.update(stem_points(sequence, Path(args.stem), args.intra_period))
        for encoder in ("x264", "x265"):
            points[encoder] = [anchor_point(sequence, encoder, args.preset, qp, args.intra_period) for qp in args.qps]
        results["sequences"][sequence.name] = {"frames": len(sequence.clip.frames), "width": sequence.clip.width,
                                               "height": sequence.clip.height, "points": points,
                                               "bd_rate_of_nirvana": bd_rates(points)}
    lines = []
    for name, entry in results["sequences"].items():
        lines.append(f"{name} ({entry['frames']} frames)")
        for codec, points in entry["points"].items():
            lines.append(f"  {codec:9s} " + "  ".join(f"{p['bpp']:.4f} bpp {p['psnr-rgb']:.2f} dB" for p in points))
        lines.append(f"  BD-rate of NIRVANA: {entry['bd_rate_of_nirvana']}")
    _common.emit(args, results, "\n".join(lines))


if __name__ == "__main__":
    main()
