"""Portable pixels: a file decodes to the same pixels whatever the CPU's kernels and thread count,
and what that costs against the fast (CPU-dependent) synthesis, side by side in one run.

An image (default kodim01, the shipped model) and the first ``--frames`` frames of a clip (default
vid4_city, ``models/stem.safetensors``, an I-frame every 5) are each coded twice: as ``codeclab
encode`` writes them by default (portable: float64 synthesis) and with ``--fast-decode``. Every
file is then decoded in a separate process under each variant of the environment a different
machine would present: oneDNN limited to AVX2 or to SSE4.1, ATen's portable kernels, one and two
threads (``DNNL_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``, ``OMP_NUM_THREADS``). Reported per file:
the distinct pixel hashes across the variants (1: identical everywhere), the samples that differ
from the first variant, and the decode time of the default environment (one thread, best of
``--repeat``), portable over fast.

Usage: python benchmarks/portable_pixels.py [--image PATH] [--model PATH] [--clip DIR] [--stem PATH]
       [--frames 10] [--repeat 3] [--json] [--json-file PATH] [--smoke]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

VARIANTS = {"default": {}, "DNNL_MAX_CPU_ISA=AVX2": {"DNNL_MAX_CPU_ISA": "AVX2"},
            "DNNL_MAX_CPU_ISA=SSE41": {"DNNL_MAX_CPU_ISA": "SSE41"},
            "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
            "1 thread": {"OMP_NUM_THREADS": "1"}, "2 threads": {"OMP_NUM_THREADS": "2"}}

# Run in each variant's process: decode every file `repeat` times, print pixels and best seconds.
_DECODE = """
import json, sys, time
from pathlib import Path
import numpy as np
from codeclab.formats.image_file import decode_image
from codeclab.formats.model_file import load_model
from codeclab.formats.video_file import decode_video
jobs, repeat, out = json.loads(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
results = {}
for name, (path, model) in jobs.items():
    data, codec, best = Path(path).read_bytes(), load_model(model), float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        pixels = decode_image(data, codec) if path.endswith(".clab") else np.stack(decode_video(data, codec).frames)
        best = min(best, time.perf_counter() - start)
    np.save(out / f"{name}.npy", pixels)
    results[name] = best
print(json.dumps(results))
"""


def main(argv=None) -> int:
    import numpy as np

    from codeclab.data.images import read_image
    from codeclab.data.video import open_video
    from codeclab.formats.image_file import encode_image
    from codeclab.formats.model_file import load_model
    from codeclab.formats.video_file import encode_video

    parser = _common.parser(__doc__)
    parser.add_argument("--image", type=Path, default=_common.DATA / "kodak" / "kodim01.png")
    parser.add_argument("--model", default=str(_common.ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors"))
    parser.add_argument("--clip", type=Path, default=_common.DATA / "video" / "vid4_city")
    parser.add_argument("--stem", default=str(_common.ROOT / "models" / "stem.safetensors"))
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = _common.parse(parser, argv, image=lambda: _common.smoke_data() / "kodak" / "kodim01.png",
                         model=lambda: _common.smoke_model("mbt2018_mean_vr,codec.N=16,codec.M=24"),
                         clip=lambda: _common.smoke_data() / "video" / "vid4_city",
                         stem=lambda: _common.smoke_model("stem,codec.N=16,codec.M=24,codec.spatial=checkerboard"),
                         frames=3, repeat=1)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        image, codec = read_image(args.image), load_model(args.model)
        clip = open_video(args.clip, "bt601", args.frames).clip()
        stem = load_model(args.stem)
        jobs = {}
        for fast in (False, True):
            kind = "fast" if fast else "portable"
            (folder / f"image-{kind}.clab").write_bytes(encode_image(codec, image, codec.rate_levels // 2 or None, fast_decode=fast))
            (folder / f"clip-{kind}.clav").write_bytes(encode_video(stem, clip, 5, stem.rate_levels // 2, fast_decode=fast).data)
            jobs[f"image-{kind}"] = (str(folder / f"image-{kind}.clab"), args.model)
            jobs[f"clip-{kind}"] = (str(folder / f"clip-{kind}.clav"), args.stem)
        python_path = os.pathsep.join(filter(None, (str(_common.ROOT), os.environ.get("PYTHONPATH"))))
        pixels, seconds = {}, {}
        for variant, env in VARIANTS.items():
            out = folder / variant.replace(" ", "_").replace("=", "_")
            out.mkdir()
            # The timed runs: the default environment on one thread; the others decode once.
            timed = variant == "1 thread"
            proc = subprocess.run([sys.executable, "-c", _DECODE, json.dumps(jobs), str(args.repeat if timed else 1), str(out)],
                                  capture_output=True, text=True, env={**os.environ, **env, "PYTHONPATH": python_path})
            if proc.returncode:
                raise SystemExit(proc.stderr)
            if timed:
                seconds = json.loads(proc.stdout.splitlines()[-1])
            pixels[variant] = {name: np.load(out / f"{name}.npy") for name in jobs}
    first = next(iter(VARIANTS))
    results = {"image": str(args.image), "clip": f"{args.clip} ({args.frames} frames)", "variants": list(VARIANTS), "files": {}}
    for name in jobs:
        decoded = [pixels[variant][name] for variant in VARIANTS]
        results["files"][name] = {
            "distinct_pixel_hashes": len({d.tobytes() for d in decoded}),
            "samples_differing_from_default": {v: int((d != decoded[0]).sum()) for v, d in zip(VARIANTS, decoded) if v != first},
            "samples": int(decoded[0].size),
            "max_difference": max(int(np.abs(d.astype(int) - decoded[0]).max()) for d in decoded),
            "decode_seconds_1_thread": round(seconds[name], 3),
        }
    for what in ("image", "clip"):
        results[f"{what}_portable_over_fast"] = round(seconds[f"{what}-portable"] / seconds[f"{what}-fast"], 2)
    lines = [f"{name}: {r['distinct_pixel_hashes']} distinct pixel hash(es) over {len(VARIANTS)} environments, max difference "
             f"{r['max_difference']}, decode {r['decode_seconds_1_thread']} s" for name, r in results["files"].items()]
    lines += [f"{what}: portable / fast decode time = {results[f'{what}_portable_over_fast']}" for what in ("image", "clip")]
    _common.emit(args, results, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
