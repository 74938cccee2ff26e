"""``codeclab bd-rate CURVE --anchor ANCHOR [--method cubic|pchip|akima] [--metric M]``.

Prints the BD-rate (%) and BD-PSNR of CURVE against ANCHOR, two RD curve files in CompressAI
JSON or two-column text. The last line is machine-readable:
``bd_rate=<float> bd_psnr=<float>``. Errors print ``codeclab: error: ...`` and exit 1, as the
other codeclab commands do.
"""

from __future__ import annotations

import argparse

import math

from codeclab.errors import CodecLabError


def _share(text: str) -> float:
    """argparse type of ``--min-overlap``: a finite float in [0, 1] (``nan`` would pass any comparison)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0.0, 1.0], got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``bd-rate`` sub-command on an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "bd-rate", help="Bjontegaard delta rate of one RD curve against another",
        description="BD-rate (%%) and BD-PSNR (dB) of CURVE against ANCHOR. Curves: CompressAI "
                    "result JSON or 'bpp, value' text files.")
    p.add_argument("curve", help="RD curve file of the codec under test")
    p.add_argument("--anchor", required=True, help="RD curve file of the reference codec")
    # No argparse choices: they would need bd_rate (numpy) to build every codeclab command's parser;
    # bd() refuses an unknown method with a one-line error.
    p.add_argument("--method", default="cubic",
                   help="cubic: VCEG-M33 polynomial fit; pchip/akima: JVET piecewise cubic")
    p.add_argument("--metric", default=None,
                   help="quality metric key (psnr-rgb, ms-ssim-rgb, ms-ssim-rgb-db, psnr-y); also "
                        "the meaning of a text file's second column (default: psnr-rgb, or as "
                        "the text file's folder says, e.g. MS-SSIM_sRGB_RGB)")
    p.add_argument("--min-overlap", type=_share, default=0.5,
                   help="smallest quality overlap, as a share of the shorter curve's range")
    p.set_defaults(func=run)
    return p


def _quality(path: str, metric: str | None):
    from codeclab.evaluation.curves import PSNR, read_curve

    curve = read_curve(path, metric=metric.removesuffix("-db") if metric else None)
    metric = metric or PSNR
    q = curve.quality(metric)
    if q is None:
        raise CodecLabError(f"{path}: no {metric} values (has {', '.join(curve.metrics)})")
    return curve, q


def run(args: argparse.Namespace) -> int:
    """Compute and print; user errors raise :class:`CodecLabError` (printed by ``codeclab``)."""
    from codeclab.evaluation.bd_rate import bd
    from codeclab.evaluation.curves import PSNR

    metric = args.metric or PSNR
    anchor, qa = _quality(args.anchor, args.metric)
    test, qt = _quality(args.curve, args.metric)
    try:
        res = bd(anchor.bpp, qa, test.bpp, qt, args.method, args.min_overlap)
    except ValueError as err:
        raise CodecLabError(str(err)) from None
    if not res.ok:
        raise CodecLabError(f"no BD-rate for {test.name} vs {anchor.name}: " + "; ".join(res.warnings))
    unit = "dB" if "psnr" in metric or metric.endswith("-db") else ""
    print(f"curve:   {test.name} ({len(test.bpp)} points)  {args.curve}")
    print(f"anchor:  {anchor.name} ({len(anchor.bpp)} points)  {args.anchor}")
    lo, hi = res.quality_range
    print(f"method:  {args.method}; overlap {lo:.2f}-{hi:.2f} {unit} {metric} "
          f"({100 * res.overlap:.0f}% of the shorter range)")
    for w in res.warnings:
        print(f"warning: {w}")
    print(f"BD-rate: {res.bd_rate:+.2f} %")
    if res.bd_psnr is not None:
        label = "BD-PSNR" if metric.startswith("psnr") else f"BD-{metric}"
        print(f"{label}: {res.bd_psnr:+.3f} {unit} ({metric})")
    bd_q = float("nan") if res.bd_psnr is None else res.bd_psnr  # no rate overlap
    print(f"bd_rate={res.bd_rate:.4f} bd_psnr={bd_q:.4f}")
    return 0

