"""JSCC evaluation (``python eval_jscc.py``): PSNR over SNR and CBR against separate source and
channel coding, on a folder of images (Kodak by default).

* **JSCC.** Every image goes through the model at every (SNR, channel count) of the grid, one
  noise draw per image (seeded), batch 1 (so the power normalisation is per image); PSNR of the
  output clamped to [0, 1] and rounded to 8 bits, averaged over images.
* **Separation bound.** The project's own source codec (a variable-rate model file, real bytes)
  followed by an ideal channel code: an image of ``3 H W`` source dimensions gets
  ``CBR * 3 H W`` complex symbols of ``capacity(SNR)`` bits each (AWGN ``log2(1 + SNR)``; Rayleigh
  fast fading the ergodic capacity), so a file fits when its bits per pixel are at most
  ``3 CBR capacity``; each image takes the highest swept level that fits. Assumptions: a
  capacity-achieving code at any block length, no header or framing overhead, the SNR known at
  the transmitter. An image no level fits gets the mid-grey image (the receiver knows nothing).
* **Cliff.** A real separate scheme is designed for one SNR: its file is chosen for that SNR's
  capacity; when the channel is better the quality stays, when it is worse the channel code
  fails and the receiver has nothing (mid grey). JSCC has no such design point.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ..channels import CHANNELS
from ..errors import CodecLabError
from ..measures import bits_per_pixel
from .metrics import psnr_rgb

GREY = 128


def jscc_points(network, images, snrs, channels, seed: int = 0) -> list[dict]:
    """PSNR of every image at every (SNR, C): ``[{image, snr, channels, cbr, psnr}]``."""
    points = []
    for name, image in images:
        x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255
        for snr in snrs:
            for count in channels:
                torch.manual_seed(seed)
                with torch.no_grad():
                    output, cbr = network(x, float(snr), int(count))
                decoded = (output[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                points.append({"image": name, "snr": float(snr), "channels": int(count), "cbr": cbr,
                               "psnr": psnr_rgb(image, decoded)})
    return points


def source_points(codec, images, levels) -> list[dict]:
    """Real files of every image at every level: ``[{image, level, bpp, psnr}]``."""
    from ..formats.image_file import decode_image, encode_image

    points = []
    for name, image in images:
        for level in levels:
            data = encode_image(codec, image, level)
            decoded = np.asarray(decode_image(data, codec))
            points.append({"image": name, "level": int(level), "bpp": bits_per_pixel(len(data), *image.shape[:2]),
                           "psnr": psnr_rgb(image, decoded)})
    return points


def capacity(channel: str, snr_db: float) -> float:
    return CHANNELS[channel].capacity(snr_db)


def separation_psnr(source: list[dict], images, channel: str, cbr: float, snr_db: float) -> float:
    """Mean PSNR of the best file per image that fits ``3 cbr capacity(snr)`` bits per pixel."""
    budget = 3 * cbr * capacity(channel, snr_db)
    values = []
    for name, image in images:
        fits = [p for p in source if p["image"] == name and p["bpp"] <= budget]
        values.append(max(p["psnr"] for p in fits) if fits else psnr_rgb(image, np.full_like(image, GREY)))
    return float(np.mean(values))


def cliff_psnr(source: list[dict], images, channel: str, cbr: float, design_snr: float, snr_db: float) -> float:
    """A separate scheme designed for ``design_snr`` received at ``snr_db``."""
    if snr_db >= design_snr:
        return separation_psnr(source, images, channel, cbr, design_snr)
    return float(np.mean([psnr_rgb(image, np.full_like(image, GREY)) for _, image in images]))


def summarise(jscc: list[dict], source: list[dict], images, channel: str, design_snrs) -> dict:
    grid = {}
    for p in jscc:
        grid.setdefault((p["snr"], p["channels"]), []).append(p)
    rows = []
    for (snr, count), group in sorted(grid.items()):
        cbr = group[0]["cbr"]
        row = {"snr": snr, "channels": count, "cbr": cbr, "jscc_psnr": float(np.mean([p["psnr"] for p in group]))}
        if source:
            row["separation_psnr"] = separation_psnr(source, images, channel, cbr, snr)
            row["cliff_psnr"] = {str(d): cliff_psnr(source, images, channel, cbr, d, snr) for d in design_snrs}
        rows.append(row)
    return {"channel": channel, "rows": rows, "images": [name for name, _ in images]}


def _plots(summary: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, files = summary["rows"], []
    counts = sorted({r["channels"] for r in rows})
    fig, axes = plt.subplots(1, len(counts), figsize=(4 * len(counts), 3.6), squeeze=False)
    for ax, count in zip(axes[0], counts):
        sub = [r for r in rows if r["channels"] == count]
        snrs = [r["snr"] for r in sub]
        ax.plot(snrs, [r["jscc_psnr"] for r in sub], "o-", label="SwinJSCC (this model)")
        if "separation_psnr" in sub[0]:
            ax.plot(snrs, [r["separation_psnr"] for r in sub], "s--", label="separation bound")
            for design in sub[0]["cliff_psnr"]:
                ax.plot(snrs, [r["cliff_psnr"][design] for r in sub], ":", label=f"separate, designed for {design} dB")
        ax.set_title(f"CBR 1/{round(1 / sub[0]['cbr'])} (C = {count})")
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "psnr_vs_snr.png", dpi=110)
    files.append("psnr_vs_snr.png")
    plt.close(fig)
    snrs = sorted({r["snr"] for r in rows})
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for snr in snrs:
        sub = sorted((r for r in rows if r["snr"] == snr), key=lambda r: r["cbr"])
        line = ax.plot([r["cbr"] for r in sub], [r["jscc_psnr"] for r in sub], "o-", label=f"JSCC {snr:g} dB")
        if "separation_psnr" in sub[0]:
            ax.plot([r["cbr"] for r in sub], [r["separation_psnr"] for r in sub], "--", color=line[0].get_color())
    ax.set_xlabel("CBR (complex symbols per source dimension)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR vs CBR (dashed: separation bound)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "psnr_vs_cbr.png", dpi=110)
    files.append("psnr_vs_cbr.png")
    plt.close(fig)
    return files


def _markdown(summary: dict, meta: dict) -> str:
    lines = [f"# JSCC evaluation: {meta['model']}", "", f"`{meta['command']}`", "",
             f"{len(summary['images'])} images ({meta['test_dir']}), channel {summary['channel']}, "
             f"separation source codec: {meta.get('source_model') or 'none'}; {meta['seconds']:.0f} s.", "",
             "| SNR (dB) | C | CBR | JSCC PSNR | separation bound | " +
             " | ".join(f"separate @ {d} dB" for d in meta["design_snrs"]) + " |",
             "|---|---|---|---|---|" + "---|" * len(meta["design_snrs"])]
    for r in summary["rows"]:
        cliff = r.get("cliff_psnr", {})
        sep = f"{r['separation_psnr']:.2f}" if "separation_psnr" in r else "-"
        lines.append(f"| {r['snr']:g} | {r['channels']} | 1/{round(1 / r['cbr'])} | {r['jscc_psnr']:.2f} | {sep} | " +
                     " | ".join(f"{cliff[str(d)]:.2f}" if str(d) in cliff else "-" for d in meta["design_snrs"]) + " |")
    return "\n".join(lines) + "\n"


def run_jscc_eval(cfg: DictConfig) -> dict:
    """Measure and write ``report.md``, ``summary.json`` and the plots into the run directory."""
    from ..data.images import list_images, read_image
    from ..formats.model_file import load_model
    from ..formats.network_file import load_network

    if not cfg.get("model"):
        raise CodecLabError("give model=PATH (a JSCC network file: python train.py experiment=swinjscc)")
    start = time.perf_counter()
    network = load_network(cfg.model, "jscc")
    if cfg.get("channel"):
        network.channel = CHANNELS.build(cfg.channel)
    channel = cfg.get("channel") or network.config["channel"]
    paths = list_images(cfg.test_dir)[: cfg.get("max_images") or None]
    images = [(Path(p).stem, read_image(p, notice=None)) for p in paths]
    for name, image in images:
        if image.shape[0] % network.downsampling or image.shape[1] % network.downsampling:
            raise CodecLabError(f"{name}: sides must be multiples of {network.downsampling} for this model")
    channels = list(cfg.get("channels") or network.channels)
    jscc = jscc_points(network, images, list(cfg.snrs), channels, cfg.seed)
    source = []
    if cfg.get("source_model"):
        codec = load_model(cfg.source_model)
        levels = list(range(0, codec.rate_levels, cfg.source_level_step)) + [codec.rate_levels - 1]
        source = source_points(codec, images, sorted(set(levels)))
    summary = summarise(jscc, source, images, channel, list(cfg.design_snrs))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"model": cfg.model, "command": cfg.get("command") or "python eval_jscc.py", "test_dir": cfg.test_dir,
            "source_model": cfg.get("source_model"), "design_snrs": list(cfg.design_snrs),
            "seconds": time.perf_counter() - start}
    summary["plots"] = _plots(summary, out_dir)
    (out_dir / "summary.json").write_text(json.dumps({**summary, "meta": meta, "jscc_points": jscc, "source_points": source},
                                                     indent=1) + "\n")
    (out_dir / "report.md").write_text(_markdown(summary, meta))
    print(_markdown(summary, meta))
    print(f"report: {out_dir / 'report.md'}")
    return summary
