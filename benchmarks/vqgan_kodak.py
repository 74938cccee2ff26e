"""VQGAN ladder on Kodak: real file bytes per index model, quality, timings, lost-index recovery,
and the lowest settings of JPEG / WebP / AVIF and a hyperprior model side by side.

    OMP_NUM_THREADS=1 python benchmarks/vqgan_kodak.py --models DIR --data ../shared/data/kodak \\
        --out reports/vqgan [--hyperprior MODEL] [--anchor compressai-bmshj2018-hyperprior_mse_cpu.json] [--smoke]

* bpp = CodecLab file bytes (container header included) x 8 / (H x W), mean over images.
* Every index model's stream must decode to the encoder's indices (checked), and the default
  index model's file must decode through ``decode_image`` to the encoder-side reconstruction
  (the portable synthesis; the quality columns use the fast one).
* Lost indices: ``round(p * n)`` positions per image chosen at random (seeded), replaced by
  (a) the usage-weighted mean codeword (no recovery) or (b) the masked-token transformer's
  most probable index given the received ones (recovery, one pass).
Writes ``kodak.json`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from codeclab.coding import get_coder  # noqa: E402
from codeclab.formats import container  # noqa: E402
from codeclab.data.images import list_images, read_image  # noqa: E402
from codeclab.entropy_models.index_models import INDEX_MODEL_IDS  # noqa: E402
from codeclab.evaluation.classic import PillowCodec  # noqa: E402
from codeclab.evaluation.metrics import measure  # noqa: E402
from codeclab.formats.file_coding import codec_input, model_hash, to_uint8  # noqa: E402
from codeclab.formats.image_file import decode_image, encode_image  # noqa: E402
from codeclab.formats.model_file import load_model  # noqa: E402

CLASSIC_LOWEST = [
    PillowCodec("JPEG", [1], format="JPEG", setting_param="quality", params={"subsampling": "4:2:0", "optimize": True}),
    PillowCodec("WebP", [0], format="WEBP", setting_param="quality", params={"method": 6}),
    PillowCodec("AVIF", [0], format="AVIF", setting_param="quality", params={"speed": 6, "subsampling": "4:4:4"}),
]


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if not math.isnan(r[key])]
    return float(np.mean(values)) if values else math.nan


def _summary(rows: list[dict]) -> dict:
    return {k: _mean(rows, k) for k in ("bpp", "psnr-rgb", "ms-ssim-rgb", "enc_s", "dec_s")}


def code_learned(codec, images) -> dict:
    """Whole-pipeline encode/decode (``encode_image``/``decode_image``) of every image."""
    rows = []
    for _, image in images:
        t0 = time.perf_counter()
        data = encode_image(codec, image)
        t1 = time.perf_counter()
        out = decode_image(data, codec)
        rows.append({"bpp": 8 * len(data) / (image.shape[0] * image.shape[1]), "enc_s": t1 - t0,
                     "dec_s": time.perf_counter() - t1, **measure(image, out, y_psnr=False)})
    return _summary(rows)


@torch.no_grad()
def code_vqgan(codec, images) -> dict:
    """Every index model on every image: real files, exactness, and timings.

    The encoder and decoder networks run once per image (their time is shared by the index
    models); each index model's coding and decoding time is added to it. The file of the
    default index model is also decoded through ``decode_image`` (the command-line path).
    """
    rows, coder = {kind: [] for kind in INDEX_MODEL_IDS}, get_coder()
    quality = []
    for _, image in images:
        x = codec_input(image, codec.downsampling)
        t0 = time.perf_counter()
        indices = codec.indices(x)[0]
        t_net_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        x_hat = codec.decode_indices(indices[None])
        t_net_dec = time.perf_counter() - t0
        pixels = image.shape[0] * image.shape[1]
        for kind in INDEX_MODEL_IDS:
            t0 = time.perf_counter()
            stream = codec.compress_indices(indices, coder, kind)
            t1 = time.perf_counter()
            decoded = codec.decompress_indices(stream, tuple(indices.shape), coder)
            t2 = time.perf_counter()
            if not torch.equal(decoded, indices):
                raise SystemExit(f"index model {kind} did not round-trip")
            header = container.Header(codec.codec_id, model_hash(codec), image.shape[0], image.shape[1], (len(stream),),
                                      coder=coder.name)
            data = container.pack(header, [stream])
            rows[kind].append({"bpp": 8 * len(data) / pixels, "enc_s": t_net_enc + t1 - t0, "dec_s": t_net_dec + t2 - t1})
        out = to_uint8(x_hat[..., : image.shape[0], : image.shape[1]])
        # Files decode through the portable (float64) synthesis; the timed one above is the fast path.
        portable = to_uint8(codec.portable_synthesis()(codec.vector_quantizer.embed(indices[None])))[: image.shape[0], : image.shape[1]]
        if not np.array_equal(decode_image(data, codec), portable):
            raise SystemExit("decode_image differs from the encoder-side reconstruction")
        quality.append(measure(image, out, y_psnr=False))
    return {"psnr-rgb": _mean(quality, "psnr-rgb"), "ms-ssim-rgb": _mean(quality, "ms-ssim-rgb"),
            "index_models": {kind: {k: _mean(r, k) for k in ("bpp", "enc_s", "dec_s")} for kind, r in rows.items()}}


@torch.no_grad()
def lost_indices(codec, images, fractions, seed=0) -> list[dict]:
    """PSNR / MS-SSIM with a fraction of indices lost, with and without transformer recovery."""
    generator = torch.Generator().manual_seed(seed)
    probs = codec.static_model.probabilities()
    mean_codeword = (probs[:, None] * codec.vector_quantizer.embedding.weight).sum(0)
    rows = {(p, mode): [] for p in fractions for mode in ("none", "recovered")}
    accuracy = {p: [] for p in fractions}
    for _, image in images:
        x = codec_input(image, codec.downsampling)
        indices = codec.indices(x)[0]
        n = indices.numel()
        for p in fractions:
            lost = torch.zeros(n, dtype=torch.bool)
            lost[torch.randperm(n, generator=generator)[: round(p * n)]] = True
            lost = lost.reshape(indices.shape)
            z_q = codec.vector_quantizer.embed(indices[None])
            z_q[0][:, lost] = mean_codeword[:, None]
            recovered = codec.prior.recover(indices, lost)
            accuracy[p].append(float((recovered[lost] == indices[lost]).float().mean()))
            for mode, x_hat in (("none", codec.decode_codewords(z_q)), ("recovered", codec.decode_indices(recovered[None]))):
                out = to_uint8(x_hat[..., : image.shape[0], : image.shape[1]])
                rows[(p, mode)].append(measure(image, out, y_psnr=False))
    return [{"lost": p, "mode": mode, "psnr-rgb": _mean(r, "psnr-rgb"), "ms-ssim-rgb": _mean(r, "ms-ssim-rgb"),
             **({"index_accuracy": float(np.mean(accuracy[p]))} if mode == "recovered" else {})}
            for (p, mode), r in rows.items()]


def classic_lowest(images) -> list[dict]:
    results = []
    for codec in CLASSIC_LOWEST:
        reason = codec.available()
        if reason:
            print(f"skipping {codec.name}: {reason}")
            continue
        rows = []
        for _, image in images:
            coded = codec.code(image, codec.ladder[0])
            rows.append({"bpp": 8 * coded.nbytes / (image.shape[0] * image.shape[1]), "enc_s": coded.enc_s,
                         "dec_s": coded.dec_s, **measure(image, coded.decoded, y_psnr=False)})
        results.append({"codec": f"{codec.name} ({codec.setting_param}={codec.ladder[0]})", **_summary(rows)})
    return results


def _k_of(path: Path) -> int:
    return int(re.search(r"K(\d+)", path.stem).group(1))


def _fmt(value, digits=3):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_report(results: dict, out: Path) -> None:
    lines = ["# VQGAN ladder on Kodak", "", f"{results['images']} Kodak images, {results['machine']}.", "",
             "## Rate per index model (real file bytes) and quality", "",
             "| K' | log2(K')/256 | uniform bpp | static bpp | transformer bpp | PSNR (dB) | MS-SSIM | enc s (transformer) | dec s (transformer) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for rung in results["vqgan"]:
        by = rung["index_models"]
        lines.append(f"| {rung['K']} | {math.log2(rung['K']) / 256:.4f} | " + " | ".join(_fmt(by[k]["bpp"], 4) for k in INDEX_MODEL_IDS)
                     + f" | {_fmt(rung['psnr-rgb'], 2)} | {_fmt(rung['ms-ssim-rgb'], 4)} | {_fmt(by['transformer']['enc_s'], 2)}"
                     f" | {_fmt(by['transformer']['dec_s'], 2)} |")
    lines += ["", "## Lowest settings of other codecs", "", "| codec | bpp | PSNR (dB) | MS-SSIM | enc s | dec s |",
              "| --- | --- | --- | --- | --- | --- |"]
    for row in results["others"]:
        lines.append(f"| {row['codec']} | {_fmt(row['bpp'], 4)} | {_fmt(row['psnr-rgb'], 2)} | {_fmt(row['ms-ssim-rgb'], 4)}"
                     f" | {_fmt(row.get('enc_s'), 2)} | {_fmt(row.get('dec_s'), 2)} |")
    lines += ["", "## Lost indices", "", "| K' | lost | PSNR none | PSNR recovered | MS-SSIM none | MS-SSIM recovered | indices recovered exactly |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, table in results["lost"].items():
        for p in sorted({r["lost"] for r in table}):
            none = next(r for r in table if r["lost"] == p and r["mode"] == "none")
            rec = next(r for r in table if r["lost"] == p and r["mode"] == "recovered")
            lines.append(f"| {k} | {p:.0%} | {_fmt(none['psnr-rgb'], 2)} | {_fmt(rec['psnr-rgb'], 2)} | {_fmt(none['ms-ssim-rgb'], 4)}"
                         f" | {_fmt(rec['ms-ssim-rgb'], 4)} | {rec['index_accuracy']:.1%} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _smoke_models() -> str:
    """A folder with one random-weight ``vqgan_tiny`` named as the ladder names its models."""
    path = Path(_common.smoke_model("vqgan_tiny"))
    return str(path.rename(path.with_name("vqgan_K64.safetensors")).parent)


def main(argv=None) -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--models", required=True, help="folder of vqgan_K*.safetensors (ladder.py output)")
    parser.add_argument("--data", required=True, help="Kodak folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--lost", type=float, nargs="*", default=[0.05, 0.10, 0.20])
    parser.add_argument("--lost-k", type=int, nargs="*", default=None, help="codebook sizes of the lost-index test (default: all)")
    parser.add_argument("--hyperprior", default=None, help="a hyperprior model file to measure at the same time")
    parser.add_argument("--anchor", default=None, help="CompressAI-format JSON; its lowest-rate point is listed")
    parser.add_argument("--machine", default="CPU, 1 thread")
    args = _common.parse(parser, argv, models=_smoke_models, data=lambda: str(_common.smoke_data() / "kodak"), limit=1, lost=[0.1],
                         out=lambda: str(_common.smoke_scratch() / "vqgan"))
    torch.set_num_threads(1)
    images = [(p.name, read_image(p, notice=None)) for p in list_images(args.data)[: args.limit]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"images": len(images), "machine": args.machine, "vqgan": [], "lost": {}, "others": []}
    for model in sorted(Path(args.models).glob("vqgan_K*.safetensors"), key=_k_of, reverse=True):
        codec = load_model(model)
        rung = {"K": codec.n_embed, "model": model.name, **code_vqgan(codec, images)}
        results["vqgan"].append(rung)
        print(json.dumps(rung), flush=True)
        if args.lost and (not args.lost_k or codec.n_embed in args.lost_k):
            results["lost"][codec.n_embed] = lost_indices(codec, images, args.lost)
            print(json.dumps(results["lost"][codec.n_embed]), flush=True)
    results["others"] = classic_lowest(images)
    if args.hyperprior:
        codec = load_model(args.hyperprior)
        summary = code_learned(codec, images)
        results["others"].append({"codec": f"{codec.codec_id} ({Path(args.hyperprior).parent.name}, measured)", **summary})
    if args.anchor:
        anchor = json.loads(Path(args.anchor).read_text())
        r = anchor["results"]
        low = int(np.argmin(r["bpp"]))
        results["others"].append({"codec": f"{anchor['name']} lowest point (published, {Path(args.anchor).name})",
                                  "bpp": r["bpp"][low], "psnr-rgb": r["psnr-rgb"][low], "ms-ssim-rgb": r["ms-ssim-rgb"][low]})
    (out / "kodak.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, out)
    _common.emit(args, results, f"wrote {out / 'kodak.json'} and {out / 'report.md'}")


if __name__ == "__main__":
    main()
