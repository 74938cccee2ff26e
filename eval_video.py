"""Evaluate video codecs: ``python eval_video.py --model models/stem.safetensors``.

Stages (results accumulate in ``OUTPUT/learned.json`` and ``OUTPUT/anchors.json``, so each stage can
run on its own, even at the same time as the other):

* ``learned``: the model at ``--intra-periods`` and in all-intra mode (the same image codec,
  intra period 1), at ``--levels``;
* ``anchors``: x264 and x265 (``--presets``) at ``--qps`` and the same intra periods;
* ``report``: ``summary.json``, ``tables.md`` (BD-rates, P-frame savings) and plots from the
  results (with the published HEVC class D points of ``../shared/data/reference_rd/video/``, a
  different protocol, for context), and ``--training-log``'s curve.

The protocol is in :mod:`codeclab.evaluation.video`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

from codeclab.errors import CodecLabError  # noqa: E402

ROOT = Path(os.environ["PROJECT_ROOT"])
DATA = Path(os.environ.get("CODECLAB_DATA", ROOT.parent / "shared" / "data"))
SEQUENCES = [DATA / "video" / "vid4_city", DATA / "video" / "basketballpass", DATA / "video" / "parkjoy_480x270.y4m"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["learned", "anchors", "report"], choices=["learned", "anchors", "report"])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "stem.safetensors")
    parser.add_argument("--sequences", nargs="+", type=Path, default=SEQUENCES)
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of each sequence")
    parser.add_argument("--intra-periods", nargs="+", type=int, default=[12, 32, -1])
    parser.add_argument("--levels", nargs="+", type=int, default=[8, 24, 40, 56])
    parser.add_argument("--encoders", nargs="+", default=["x264", "x265"], choices=["x264", "x265"])
    parser.add_argument("--presets", nargs="+", default=["medium", "veryslow"])
    parser.add_argument("--qps", nargs="+", type=int, default=[22, 27, 32, 37, 42])
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "video")
    parser.add_argument("--training-log", type=Path, default=None, help="report: a STEM training's metrics.csv to plot")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    import torch

    from codeclab.evaluation import video
    from codeclab.formats.model_file import load_model

    torch.set_grad_enabled(False)
    stages = set(args.stages)
    codec = load_model(args.model) if "learned" in stages else None
    for stage in ("learned", "anchors"):
        if stage in stages:
            run_stage(args, stage, codec)
    if "report" in stages:
        from codeclab.evaluation.video_report import markdown_tables, training_curve, write_report

        results = {stage: video.load_results(args.output / f"{stage}.json") for stage in ("learned", "anchors")}
        summary = write_report(results, args.output, DATA / "reference_rd" / "video")
        (args.output / "tables.md").write_text(markdown_tables(summary))
        if args.training_log:
            training_curve(args.training_log, args.output)
        print(f"summary, tables and plots written to {args.output}")


def run_stage(args: argparse.Namespace, stage: str, codec) -> None:
    from codeclab.evaluation import video
    from codeclab.formats.video_file import analyse_frames

    results_path = args.output / f"{stage}.json"
    results = video.load_results(results_path)
    for path in args.sequences:
        sequence = video.load_sequence(path, args.frames)
        entry = results.setdefault(sequence.name, {"frames": len(sequence.clip.frames), "size": [sequence.clip.width, sequence.clip.height]})
        if stage == "learned":
            results["model"] = str(args.model.name)
            analysed = analyse_frames(codec, sequence.clip)
            for intra_period in [1, *args.intra_periods]:
                system = "all-intra" if intra_period == 1 else "stem"
                points = []
                for level in args.levels:
                    points.append(video.learned_point(codec, sequence, intra_period, level, analysed))
                    print(f"{sequence.name} {system} ip={intra_period} level={level}: {points[-1]['bpp']:.4f} bpp, "
                          f"{points[-1]['psnr-rgb']:.2f} dB RGB", flush=True)
                entry.setdefault(system, {})[str(intra_period)] = points
                video.save_results(results_path, results)
        else:
            results["ffmpeg"] = video.ffmpeg_versions()
            for encoder in args.encoders:
                for preset in args.presets:
                    for intra_period in args.intra_periods:
                        points = []
                        for qp in args.qps:
                            points.append(video.anchor_point(sequence, encoder, preset, qp, intra_period))
                            print(f"{sequence.name} {encoder}-{preset} ip={intra_period} qp={qp}: {points[-1]['bpp']:.4f} bpp, "
                                  f"{points[-1]['psnr-rgb']:.2f} dB RGB ({points[-1]['encode_seconds']:.1f} s)", flush=True)
                        entry.setdefault(f"{encoder}-{preset}", {})[str(intra_period)] = points
                        video.save_results(results_path, results)


def main(argv=None) -> int:
    try:
        run(parse_args(argv))
    except CodecLabError as err:
        print(f"eval_video.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
