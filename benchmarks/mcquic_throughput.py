"""McQuic throughput: megapixels per second of encode and decode on one Kodak image, side by side
with the shipped hyperprior codec and compressai's mbt2018-mean, in one process.

Subjects:
  * ``mcquic``: the default McQuic (C = 128, m = 2, K = 8192, 2048, 512) at random weights
    (uniform tables: the fixed 0.1274 bpp), coded by CodecLab's rANS;
  * ``hyperprior``: ``models/zoo/mbt2018_mean_vr.safetensors`` at its middle rate level, with the
    transform settings of ``codeclab encode/decode``;
  * ``compressai``: ``compressai.zoo.mbt2018_mean(quality=..., pretrained=False)`` (random weights)
    with its own ``compress``/``decompress``.

Timed: ``compress(x)`` and ``decompress(...)`` of the padded image, eval mode, no gradients, one
untimed warm-up each. Runs alternate between the subjects (run 1 of each, then run 2, ...), the
median over ``--runs`` is reported; megapixels are the original image's (``H x W / 1e6``).

Usage: OMP_NUM_THREADS=1 python benchmarks/mcquic_throughput.py [--runs N] [--image PNG] [--quality Q]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")


def subjects(x: torch.Tensor, quality: int) -> dict:
    """``{name: (encode, decode, info)}``: closures over the image ``x`` ``[1, 3, H, W]``."""
    from compressai.zoo import mbt2018_mean

    from codeclab.codecs import mcquic
    from codeclab.codecs.base import coding_transforms
    from codeclab.formats.model_file import load_model

    torch.manual_seed(0)
    mcq = mcquic().eval()
    hyper = load_model(ROOT / "models" / "zoo" / "mbt2018_mean_vr.safetensors").eval()
    hyper.configure_transforms(*coding_transforms(hyper))
    level = hyper.rate_levels // 2
    reference = mbt2018_mean(quality=quality, pretrained=False).eval()
    reference.update(force=True)
    out = {}
    padded = {name: _pad(x, multiple) for name, multiple in (("mcquic", mcq.downsampling), ("hyperprior", hyper.downsampling),
                                                             ("compressai", 64))}
    state = {}

    def add(name, model, encode, decode, info):
        def enc():
            state[name] = encode()

        def dec():
            decode(state[name])

        out[name] = (enc, dec, {"parameters": sum(p.numel() for p in model.parameters()), **info})

    add("mcquic", mcq, lambda: mcq.compress(padded["mcquic"]), mcq.decompress, {"fixed_bpp": mcq.fixed_rate})
    add("hyperprior", hyper, lambda: hyper.compress(padded["hyperprior"], level), hyper.decompress, {"level": level})
    add("compressai", reference, lambda: reference.compress(padded["compressai"]),
        lambda c: reference.decompress(c["strings"], c["shape"]), {"quality": quality})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"))
    parser.add_argument("--quality", type=int, default=4, help="compressai mbt2018-mean quality (4: N, M = 128, 192)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    image = np.array(Image.open(args.image).convert("RGB"))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    megapixels = image.shape[0] * image.shape[1] / 1e6
    runs = subjects(x, args.quality)
    times = {name: {"encode": [], "decode": []} for name in runs}
    with torch.no_grad():
        for enc, dec, _ in runs.values():  # warm-up
            enc(), dec()
        for _ in range(args.runs):
            for name, (enc, dec, _) in runs.items():
                for phase, fn in (("encode", enc), ("decode", dec)):
                    start = time.perf_counter()
                    fn()
                    times[name][phase].append(time.perf_counter() - start)
    result = {"image": Path(args.image).name, "megapixels": megapixels, "runs": args.runs, "threads": torch.get_num_threads(),
              "codecs": {}}
    for name, (_, _, info) in runs.items():
        enc, dec = statistics.median(times[name]["encode"]), statistics.median(times[name]["decode"])
        result["codecs"][name] = {**info, "encode_s": round(enc, 4), "decode_s": round(dec, 4),
                                  "encode_mp_per_s": round(megapixels / enc, 4), "decode_mp_per_s": round(megapixels / dec, 4)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
