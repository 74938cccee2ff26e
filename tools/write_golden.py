"""Write one golden bitstream (tests/golden) with the code of an old commit.

Run it inside a worktree of the commit that introduced the container version, with the coder
extension copied or built there::

    git worktree add --detach /tmp/wt 0983e54 && cp codeclab/coding/_native*.so /tmp/wt/codeclab/coding/
    cd /tmp/wt && PYTHONPATH=. python /path/to/tools/write_golden.py container2 OUT tests/golden/astronaut_97x131.png [MODEL]

``KIND``: ``container2`` (a rate level), ``container3`` (tiles of 64), ``container4`` (the
fast-decoding flag), ``video1``, ``video2`` (the fast flag). Without ``MODEL`` it writes a tiny
seeded model first (mbt2018-mean N=8, M=12, 4 rate levels; STEM N=8, M=12, checkerboard), its
transforms' kernels perturbed by 0.05 noise; with it, it codes with that model (an earlier
commit's). Prints the manifest record: sizes, the arguments and the writer's decoded SHA-256.
Only APIs that every commit since ``0983e54`` has are used.
"""

import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

kind, out, image_path = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
reuse = Path(sys.argv[4]) if len(sys.argv) > 4 else None  # a model file an earlier commit wrote
image = np.asarray(Image.open(image_path).convert("RGB"))
torch.manual_seed(0)


def perturbed(codec):
    with torch.no_grad():
        for name, p in codec.named_parameters():
            if name.startswith(("g_a.", "g_s.")) and p.dim() == 4:
                p.add_(0.05 * torch.randn_like(p))
    return codec.eval()


def sha(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


from codeclab.formats.model_file import export_model, load_model  # noqa: E402

record = {}
if kind.startswith("container"):
    from codeclab.codecs import mbt2018_mean
    from codeclab.formats.image_file import decode_image, encode_image

    args = {"container2": {"level": 2}, "container3": {"level": 2, "tile": 64}, "container4": {"level": 2, "fast_decode": True}}[kind]
    model = reuse or out / f"{kind}-mbt2018-mean.safetensors"
    if not reuse:
        export_model(perturbed(mbt2018_mean(N=8, M=12, rate_levels=4)), model)
    codec = load_model(model)
    data = encode_image(codec, image, **args)
    name = f"{kind}-mbt2018-mean.clab"
    (out / name).write_bytes(data)
    record = {"name": name, "model": model.name, "bytes": len(data), "encode": args,
              "writer_sha256": sha(decode_image(data, load_model(model))), "version_byte": data[4]}
else:
    from codeclab.codecs import stem
    from codeclab.data.video import Clip
    from codeclab.formats.video_file import decode_video, encode_video

    args = {"video1": {}, "video2": {"fast_decode": True}}[kind]
    model = reuse or out / f"{kind}-stem.safetensors"
    if not reuse:
        export_model(perturbed(stem(N=8, M=12, spatial="checkerboard")), model)
    codec = load_model(model)
    # Four odd-sized frames from the astronaut crop, moving 3 pixels a frame.
    clip = Clip([np.ascontiguousarray(image[10:60, 3 * t : 3 * t + 70]) for t in range(4)], Fraction(25), "limited", "bt601", "y4m")
    data = encode_video(codec, clip, intra_period=2, **args).data
    name = f"{kind}-stem.clav"
    (out / name).write_bytes(data)
    frames = decode_video(data, load_model(model)).frames
    record = {"name": name, "model": model.name, "bytes": len(data), "encode": {"intra_period": 2, **args},
              "writer_sha256": sha(np.stack(frames)), "version_byte": data[4]}
print(json.dumps(record))
