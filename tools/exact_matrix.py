"""Cross-configuration decoding matrix: encode under one configuration, decode under another, in
separate processes, and compare the decoded latents with the encoder's.

A configuration is ``t{threads}-{dnn|nodnn}-{nchw|cl}-{fp32|bf16}-{f64|i64}``: torch threads,
oneDNN on or off, memory layout of the whole codec (transforms and entropy-parameter networks),
the transforms' dtype, and the integer networks' backend (``CODECLAB_INTEGER_BACKEND``). Phase 1
runs one encoder process per configuration (real CodecLab files, plus a SHA-256 of the encoder's
``y_hat``, and the ``y_hat`` itself as ``.npy``); phase 2 one decoder process per configuration,
which decodes the files of every encoding configuration (entropy decoding only, with the
end-of-stream checks) and hashes its ``y_hat``. A pair passes when the hashes are equal; a
failure is reported as a desynchronisation the decoder detected (an error), wrong symbols it did
not detect (``y_hat`` off by half a step or more), or right symbols with float means that differ.

    python tools/exact_matrix.py -m MODEL [--configs full|quick] [--pairs all|complement] [--level L ...] [--json OUT] IMAGE...

``--configs full`` is the 32-configuration product, ``quick`` four configurations that take
every factor to both values on both sides. ``--pairs all`` decodes every encoding configuration's
files under every decoding configuration; ``complement`` (for the full product on many images)
under the encoder's own configuration and the one that differs in every factor. The exit status
is 0 when every pair passes.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FACTORS = {
    "threads": ("t1", "t2"),
    "onednn": ("dnn", "nodnn"),
    "layout": ("nchw", "cl"),
    "transforms": ("fp32", "bf16"),
    "integer": ("f64", "i64"),
}
QUICK = ["t1-dnn-nchw-fp32-f64", "t2-nodnn-cl-bf16-i64", "t2-dnn-cl-fp32-f64", "t1-nodnn-nchw-bf16-i64"]


def all_configs() -> list[str]:
    return ["-".join(values) for values in itertools.product(*FACTORS.values())]


def complement(config: str) -> str:
    """The configuration that differs from ``config`` in every factor."""
    return "-".join(values[1 - values.index(value)] for value, values in zip(config.split("-"), FACTORS.values()))


def _environment(config: str) -> dict:
    threads, onednn, layout, transforms, integer = config.split("-")
    env = dict(os.environ)
    env.update(
        CODECLAB_MATRIX_THREADS=threads[1:],
        CODECLAB_MATRIX_ONEDNN="1" if onednn == "dnn" else "0",
        CODECLAB_LAYOUT="channels_last" if layout == "cl" else "nchw",
        CODECLAB_TRANSFORMS=transforms,
        CODECLAB_INTEGER_BACKEND="float64" if integer == "f64" else "int64",
    )
    return env


def _load(model: str):
    """The model under this process's configuration (set by :func:`_environment`)."""
    import torch

    from codeclab.formats.model_file import load_model

    torch.set_num_threads(int(os.environ["CODECLAB_MATRIX_THREADS"]))
    torch.backends.mkldnn.enabled = os.environ["CODECLAB_MATRIX_ONEDNN"] == "1"
    codec = load_model(model)
    if os.environ["CODECLAB_LAYOUT"] == "channels_last":
        codec.entropy_model.to(memory_format=torch.channels_last)
    return codec


def _digest(latents) -> str:
    digest = hashlib.sha256()
    for y_hat in latents:
        digest.update(y_hat.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def encode_worker(model: str, images: list[str], levels: list[int | None], out: Path) -> None:
    from codeclab.data.images import read_image
    from codeclab.coding import get_coder
    from codeclab.formats.file_coding import codec_input
    from codeclab.formats.image_file import file_bytes

    codec = _load(model)
    codec.ensure_tables()
    hashes = {}
    for path in images:
        image = read_image(path, notice=None)
        x = codec_input(image, codec.downsampling)
        y, coder = codec.analysis(x), get_coder()  # one tile (images up to 1024 pixels a side)
        for level in levels:
            name = f"{Path(path).stem}-L{level}"
            compressed = codec.compress_y(y, x.shape[-2:], coder, level)
            (out / f"{name}.clab").write_bytes(file_bytes(codec, image, [compressed], coder, level, None))
            hashes[name] = _digest([compressed.y_hat])
            np.save(out / f"{name}.npy", compressed.y_hat.numpy())
    (out / "encoder.json").write_text(json.dumps(hashes))


def decode_worker(model: str, folders: list[Path], out: Path) -> None:
    from codeclab.errors import CodecLabError
    from codeclab.formats.image_file import decode_image_y

    codec = _load(model)
    results, differences = {}, {}
    for folder in folders:
        for path in sorted(folder.glob("*.clab")):
            key = f"{folder.name}/{path.stem}"
            try:
                (y_hat,) = decode_image_y(path.read_bytes(), codec)
            except CodecLabError as err:
                results[key] = f"error: {err}"
                continue
            results[key] = _digest([y_hat])
            encoded = np.load(path.with_suffix(".npy"), allow_pickle=False)
            if encoded.shape == tuple(y_hat.shape):
                differences[key] = float(np.abs(y_hat.numpy() - encoded).max())
    out.write_text(json.dumps(results))
    out.with_suffix(".diff.json").write_text(json.dumps(differences))


def _run(config: str, *arguments) -> None:
    command = [sys.executable, __file__, "--worker", *map(str, arguments)]
    subprocess.run(command, env=_environment(config), check=True)


def run_matrix(model: str, images: list[str], configs: list[str], levels: list[int | None], work: Path,
               pairs: str = "all") -> list[dict]:
    """Every (encoding, decoding) configuration pair (``pairs="complement"``: own and complement
    only) on every image and level: a list of ``{"encode", "decode", "file", "equal", "error"}``."""
    level_args = [str(level) for level in levels]
    for config in configs:
        (work / config).mkdir(parents=True, exist_ok=True)
        _run(config, "encode", model, work / config, *level_args, "--", *images)
    rows = []
    for config in configs:
        sources = configs if pairs == "all" else [c for c in configs if c in (config, complement(config))]
        report = work / f"decoded-{config}.json"
        _run(config, "decode", model, report, *[work / c for c in sources])
        decoded = json.loads(report.read_text())
        differences = json.loads(report.with_suffix(".diff.json").read_text())
        for encoded in sources:
            expected = json.loads((work / encoded / "encoder.json").read_text())
            for name, digest in expected.items():
                got = decoded[f"{encoded}/{name}"]
                rows.append({"encode": encoded, "decode": config, "file": name, "equal": got == digest,
                             "error": got[len("error: "):] if got.startswith("error: ") else None,
                             "max_abs_diff": differences.get(f"{encoded}/{name}")})
    return rows


def _worker(argv: list[str]) -> None:
    mode, model, target, *rest = argv
    if mode == "encode":
        split = rest.index("--")
        levels = [None if a == "None" else int(a) for a in rest[:split]]
        encode_worker(model, rest[split + 1 :], levels, Path(target))
    else:
        decode_worker(model, [Path(f) for f in rest], Path(target))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        _worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--configs", default="quick", help="full, quick, or a comma-separated list")
    parser.add_argument("--pairs", choices=("all", "complement"), default="all")
    parser.add_argument("--level", type=int, action="append", help="rate levels (variable-rate models; repeatable)")
    parser.add_argument("--json", type=Path, help="write every pair's result here")
    args = parser.parse_args(argv)
    configs = {"full": all_configs(), "quick": QUICK}.get(args.configs) or args.configs.split(",")
    with tempfile.TemporaryDirectory() as work:
        rows = run_matrix(args.model, args.images, configs, args.level or [None], Path(work), args.pairs)
    failed = [r for r in rows if not r["equal"]]
    crossed = [r for r in rows if r["encode"] != r["decode"]]
    detected = sum(1 for r in failed if r["error"])
    wrong_symbols = sum(1 for r in failed if not r["error"] and r["max_abs_diff"] >= 0.5)
    print(f"{len(rows)} (encode, decode, file) triples over {len(configs)} configurations ({len(crossed)} across "
          f"configurations): {len(failed)} mismatches: {detected} desynchronised and reported as errors, "
          f"{wrong_symbols} with wrong symbols undetected, {len(failed) - detected - wrong_symbols} with the right "
          "symbols but means that differ below half a step")
    for row in failed[:10]:
        print(f"  {row['encode']} -> {row['decode']} {row['file']}: {row['error'] or 'different latents'}")
    if args.json:
        args.json.write_text(json.dumps({"configs": configs, "rows": rows}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
