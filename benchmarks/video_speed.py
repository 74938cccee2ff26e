"""Video coding speed: frames per second of ``encode_video`` / ``decode_video`` (what ``codeclab
encode/decode`` run on a clip), with the time split between networks and entropy coding, beside
x265 (one thread, the same frames, same run) as the reference.

Timed: coding the first ``--frames`` frames of a sequence from RGB arrays in memory to the file's
bytes, and the bytes back to RGB arrays (reading and writing files not timed), after one untimed
warm-up clip. Split: ``analysis`` (g_a), ``synthesis`` (g_s as decoding runs it, float64 unless the file
allows the fast path, with the conversion to 8 bits), ``entropy coding`` (every call into
the rANS stream encoders/decoders) and ``entropy networks`` (the rest: hyperprior, temporal and
spatial priors, table indexes). The median of ``--runs`` runs is reported.

x265: the evaluation's anchor command (:func:`codeclab.evaluation.video.anchor_command`:
``-preset medium -tune zerolatency``, constant QP 32, no B-frames, the same intra period, one
thread) from a Y4M file to an HEVC stream, and ffmpeg decoding it to raw 4:2:0 (one ffmpeg process
per run, whose start-up is included: about 0.05 s).

``--baseline MODEL`` times a second model file in the same run (ratios ``*_speed_vs_baseline``);
``--fast-decode`` codes files that allow the fast synthesis.

Usage: python benchmarks/video_speed.py [--model models/stem.safetensors] [--baseline MODEL] [--fast-decode]
       [--frames 12] [--sequences basketballpass vid4_city] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from codec_speed import CodingClock, TimedCoder  # noqa: E402


def timed_method(obj, name: str, clock: CodingClock) -> None:
    setattr(obj, name, clock.timed(getattr(obj, name)))


def learned(model: Path, clip, intra_period: int, level: int, runs: int, fast_decode: bool = False) -> dict:
    from codeclab.formats.model_file import load_model
    from codeclab.formats.video_file import decode_video, encode_video

    from codeclab.formats import video_file

    codec = load_model(model)
    coding, analysis, synthesis = CodingClock(), CodingClock(), CodingClock()
    encoder_coder = TimedCoder(video_file.get_coder(), coding)
    timed_method(codec, "analysis", analysis)
    # The decoder takes its coder from the file and its synthesis from the file's flag (float64
    # unless --fast-decode), not from the codec: time those where video_file gets them.
    get_coder, file_synthesis = video_file.get_coder, video_file.file_synthesis
    video_file.get_coder = lambda name=None: TimedCoder(get_coder(name), coding)
    video_file.file_synthesis = lambda codec, fast_decode: synthesis.timed(file_synthesis(codec, fast_decode))
    result = {"encode": [], "decode": []}
    with torch.no_grad():
        data = encode_video(codec, clip, intra_period, level, coder=encoder_coder, fast_decode=fast_decode).data  # warm-up
        decode_video(data, codec)
        for _ in range(runs):
            for phase in ("encode", "decode"):
                for clock in (coding, analysis, synthesis):
                    clock.seconds = 0.0
                start = time.perf_counter()
                if phase == "encode":
                    data = encode_video(codec, clip, intra_period, level, coder=encoder_coder, fast_decode=fast_decode).data
                else:
                    decode_video(data, codec)
                total = time.perf_counter() - start
                network = analysis.seconds if phase == "encode" else synthesis.seconds
                result[phase].append({"total": total, "entropy coding": coding.seconds,
                                      "analysis" if phase == "encode" else "synthesis": network,
                                      "entropy networks": total - coding.seconds - network})
    frames = len(clip.frames)
    summary = {"bytes": len(data)}
    for phase, rows in result.items():
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        summary[phase] = {"fps": round(frames / median["total"], 3),
                          "share": {k: round(v / median["total"], 3) for k, v in median.items() if k != "total"}}
    return summary


def x265(clip, intra_period: int, runs: int) -> dict:
    from codeclab.data.video import clip_to_yuv420, y4m_bytes
    from codeclab.ffmpeg import ffmpeg_executable
    from codeclab.evaluation.video import anchor_command

    times = {"encode": [], "decode": []}
    with tempfile.TemporaryDirectory() as folder:
        source, stream = Path(folder) / "source.y4m", Path(folder) / "stream.hevc"
        source.write_bytes(y4m_bytes(clip_to_yuv420(clip), clip.fps or Fraction(25), clip.colour_range))
        # The evaluation's anchor command (constant QP, no B-frames, one thread), at QP 32.
        encode = anchor_command("x265", "medium", 32, intra_period, source, stream)
        decode = [ffmpeg_executable(), "-loglevel", "error", "-threads", "1", "-i", str(stream), "-f", "rawvideo",
                  "-pix_fmt", "yuv420p", "-"]
        for _ in range(runs + 1):  # the first run warms the file cache, untimed
            for phase, command in (("encode", encode), ("decode", decode)):
                start = time.perf_counter()
                subprocess.run(command, capture_output=True, check=True)
                times[phase].append(time.perf_counter() - start)
    frames = len(clip.frames)
    return {phase: {"fps": round(frames / statistics.median(values[1:]), 3)} for phase, values in times.items()}


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--model", type=Path, default=_common.ROOT / "models" / "stem.safetensors")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--intra-period", type=int, default=12)
    parser.add_argument("--level", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another model file timed in the same run (e.g. the 15-bit integer networks beside --model's 8-bit ones)")
    parser.add_argument("--fast-decode", action="store_true", help="files that allow the fast, CPU-dependent synthesis")
    parser.add_argument("--sequences", nargs="+", default=["basketballpass", "vid4_city"],
                        help="folders of the shared video data (speed does not depend on the content: training sequences such as "
                             "vid4_foliage, 720x480, may be timed)")
    args = _common.parse(parser, argv, frames=3, intra_period=2, runs=1)
    video = _common.data_dir(args.smoke) / "video"
    from codeclab.data.video import read_video

    torch.set_num_threads(1)
    results = {"threads": 1, "frames": args.frames, "intra_period": args.intra_period, "level": args.level,
               "model": args.model.name, "baseline": args.baseline and args.baseline.name, "fast_decode": args.fast_decode,
               "sequences": {}}
    for name in args.sequences:
        clip = read_video(video / name, max_frames=args.frames)
        coding = (clip, args.intra_period, args.level, args.runs, args.fast_decode)
        entry = {"size": f"{clip.width}x{clip.height}", "codeclab": learned(args.model, *coding),
                 "x265-medium": x265(clip, args.intra_period, args.runs)}
        if args.baseline:
            entry["baseline"] = learned(args.baseline, *coding)
        for phase in ("encode", "decode"):
            entry[f"{phase}_speed_vs_x265"] = round(entry["codeclab"][phase]["fps"] / entry["x265-medium"][phase]["fps"], 4)
            if args.baseline:
                entry[f"{phase}_speed_vs_baseline"] = round(entry["codeclab"][phase]["fps"] / entry["baseline"][phase]["fps"], 4)
        results["sequences"][name] = entry
        print(name, json.dumps(entry), flush=True)
    if args.json or args.json_file:
        _common.emit(args, results)


if __name__ == "__main__":
    main()
