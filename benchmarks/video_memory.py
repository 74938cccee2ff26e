"""Video memory: peak resident memory of ``codeclab encode`` and ``decode`` of a video against its
length, which must not grow with the number of frames (frames are read, coded, decoded and
written one at a time).

The input is a synthetic ``--width`` x ``--height`` 8-bit 4:2:0 Y4M (default 1920x1080: a moving
gradient with noise, so P-frames have work to do) of each of ``--frames`` lengths, written frame
by frame to a temporary folder. ``codeclab encode`` (``--intra-period``, ``--level``) and
``codeclab decode`` to a Y4M run as separate processes (one thread); the peak resident memory of
each is the kernel's ``ru_maxrss``. ``growth`` is the longest video's peak over the shortest's.
The frames' size in memory (RGB ``uint8``) is reported beside them: holding every frame, as
before, would add that for each frame.

Usage: python benchmarks/video_memory.py [--model models/stem.safetensors] [--frames 10 40] [--width 1920 --height 1080]
       [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def write_y4m(path: Path, frames: int, width: int, height: int) -> None:
    """A synthetic clip, one frame in memory at a time: a gradient moving 4 pixels a frame, plus noise."""
    from codeclab.data.video import y4m_frame, y4m_header

    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:height, 0:width]
    chroma = (np.full(((height + 1) // 2, (width + 1) // 2), 128, np.uint8),) * 2
    with open(path, "wb") as handle:
        handle.write(y4m_header(width, height, Fraction(25), "limited"))
        for t in range(frames):
            luma = 16 + (((rows + columns + 4 * t) % 256) * 219) // 255 + rng.integers(0, 8, (height, width))
            handle.write(y4m_frame((luma.astype(np.uint8), *chroma)))


def main(argv=None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--model", type=Path, default=_common.ROOT / "models" / "stem.safetensors")
    parser.add_argument("--frames", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--intra-period", type=int, default=12)
    parser.add_argument("--level", type=int, default=32)
    args = _common.parse(parser, argv, model=lambda: _common.smoke_model("stem,codec.N=8,codec.M=12,codec.rate_levels=4"),
                         frames=[2, 4], width=64, height=48, intra_period=2, level=1)
    results = {"model": str(args.model), "size": f"{args.width}x{args.height}", "intra_period": args.intra_period,
               "level": args.level, "frame_mb": round(args.width * args.height * 3 / 2**20, 2), "lengths": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for frames in sorted(args.frames):
            write_y4m(work / "in.y4m", frames, args.width, args.height)
            enc_s, enc_gb = _common.run_cli("encode", str(work / "in.y4m"), "-m", str(args.model), "-o", str(work / "in.clab"),
                                            "--intra-period", str(args.intra_period), "--level", str(args.level), "--quiet")
            dec_s, dec_gb = _common.run_cli("decode", str(work / "in.clab"), "-o", str(work / "out.y4m"), "-m", str(args.model),
                                            "--quiet")
            row = {"frames": frames, "encode_s": round(enc_s, 1), "encode_peak_gb": round(enc_gb, 3),
                   "decode_s": round(dec_s, 1), "decode_peak_gb": round(dec_gb, 3),
                   "bytes": (work / "in.clab").stat().st_size}
            results["lengths"].append(row)
            print(row, file=sys.stderr, flush=True)
    first, last = results["lengths"][0], results["lengths"][-1]
    results["growth"] = {phase: round(last[f"{phase}_peak_gb"] / first[f"{phase}_peak_gb"], 3) for phase in ("encode", "decode")}
    _common.emit(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
