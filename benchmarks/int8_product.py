"""The 8-bit layers' int8 products: CodecLab's kernel (``codeclab/coding/csrc/int8_gemm.hpp``)
against ``torch._int_mm`` and float products, on the shapes a model file's 8-bit layers really
multiply, side by side in one run, one thread.

The shapes are recorded while the model encodes the first two frames of basketballpass (an
I-frame and a P-frame; 416x240) at level 32; each is then timed with random int8 operands (the
time does not depend on the values). Columns, milliseconds for all the products of those frames
(median of ``--runs``), and GMAC/s:

* ``native``: CodecLab's kernel (AVX2 where the CPU has it), what 8-bit layers run on CPUs without
  AVX-512 VNNI;
* ``torch._int_mm``: oneDNN's kernel on CPUs with AVX-512 VNNI (which the layers use there), a
  scalar loop elsewhere;
* ``float64``: the same exact integers as a float64 product (the 15-bit layers' arithmetic);
* ``float32``: the fastest float product (MKL), inexact above 2^24: the speed to beat, not an option.

Usage: python benchmarks/int8_product.py [--model models/stem_int8.safetensors] [--runs 5] [--json] [--smoke]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def recorded_shapes(model: Path, clip) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of every int8 product ``model`` runs while encoding ``clip``."""
    from codeclab.entropy_models import integer
    from codeclab.formats.model_file import load_model
    from codeclab.formats.video_file import encode_video

    shapes = []
    multiply = integer.Int8Product.__call__

    def recording(product, a):
        shapes.append((a.shape[0], a.shape[1], product.b.shape[1]))
        return multiply(product, a)

    integer.Int8Product.__call__ = recording
    try:
        with torch.no_grad():
            encode_video(load_model(model), clip, intra_period=12, level=32)
    finally:
        integer.Int8Product.__call__ = multiply
    return shapes


def prepared(kernel: str, a: torch.Tensor, b: torch.Tensor):
    """A call of ``a @ b`` by ``kernel`` with its operands already in the kernel's form."""
    from codeclab.entropy_models.integer import Int8Product

    if kernel == "native":
        product = Int8Product(b, "native")
        return lambda: product(a)
    if kernel == "torch._int_mm":
        return lambda: torch._int_mm(a, b)
    dtype = torch.float64 if kernel == "float64" else torch.float32
    a_float, b_float = a.to(dtype), b.to(dtype)
    return lambda: a_float @ b_float


def timed(products, runs: int) -> float:
    """Median seconds of calling every ``product()`` once."""
    seconds = []
    for _ in range(runs + 1):  # the first run warms caches and packs, untimed
        start = time.perf_counter()
        for product in products:
            product()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:])


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--model", type=Path, default=_common.ROOT / "models" / "stem_int8.safetensors")
    parser.add_argument("--runs", type=int, default=5)
    args = _common.parse(parser, argv, runs=1)
    from codeclab.coding.native import Int8Matrix
    from codeclab.data.video import read_video
    from codeclab.entropy_models.integer import int8_kernel

    torch.set_num_threads(1)
    clip = read_video(_common.data_dir(args.smoke) / "video" / "basketballpass", max_frames=2)
    shapes = recorded_shapes(args.model, clip)
    g = torch.Generator().manual_seed(0)
    operands = [(torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g),
                 torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=g)) for m, k, n in shapes]
    kernels = ("native", "torch._int_mm", "float64", "float32")
    macs = sum(m * k * n for m, k, n in shapes)
    results = {"threads": 1, "frames": f"{clip.width}x{clip.height}, an I-frame and a P-frame", "model": args.model.name,
               "products": len(shapes), "gmac": round(macs / 1e9, 3), "avx2": Int8Matrix.vectorised,
               "avx512_vnni": Int8Matrix.vnni, "layers_use": int8_kernel(), "ms": {}, "gmac_per_s": {}}
    for name in kernels:
        seconds = timed([prepared(name, a, b) for a, b in operands], args.runs)
        results["ms"][name] = round(seconds * 1e3, 2)
        results["gmac_per_s"][name] = round(macs / seconds / 1e9, 2)
    results["native_speed_vs"] = {name: round(results["ms"][name] / results["ms"]["native"], 3) for name in kernels}
    _common.emit(args, results)


if __name__ == "__main__":
    main()
