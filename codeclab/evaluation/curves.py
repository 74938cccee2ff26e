"""Rate-distortion curves: read published results, write CompressAI-format JSON.

Formats read (detected from content, not the file extension):

* CompressAI JSON: ``{"name": ..., "results": {"bpp": [...], "psnr-rgb": [...],
  "ms-ssim-rgb": [...], ...}}`` (also ``"psnr"``/``"ms-ssim"`` keys, as lossy-vae writes).
* Flat JSON: ``{"bpp": [...], "psnr": [...]}`` (lossy-vae's kodak-vtm18.0.json).
* Two-column text (tensorflow_compression's results): ``#`` comment lines, then ``bpp, value``
  rows (comma or whitespace separated). The metric is taken from the argument, else from the
  folder name (``PSNR_sRGB_RGB`` -> psnr-rgb, ``MS-SSIM_sRGB_RGB`` -> ms-ssim-rgb, ``*_Y`` ->
  the Y variants), else assumed to be RGB PSNR.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codeclab.errors import CodecLabError

# Metric keys follow CompressAI's result JSON.
PSNR = "psnr-rgb"
MSSSIM = "ms-ssim-rgb"
_ALIASES = {"psnr": PSNR, "ms-ssim": MSSSIM, "msssim": MSSSIM, "psnr_rgb": PSNR}
_TFC_DIRS = {
    "PSNR_sRGB_RGB": PSNR,
    "PSNR_sRGB_Y": "psnr-y",
    "MS-SSIM_sRGB_RGB": MSSSIM,
    "MS-SSIM_sRGB_Y": "ms-ssim-y",
}


@dataclass
class RDCurve:
    """One curve: mean bpp per point and the mean of each metric at those points.

    ``kind`` is "anchor" (read from a file), "classic" or "learned" (measured here); it only
    changes how the report draws the curve. ``metrics`` maps CompressAI metric keys to arrays of
    the same length as ``bpp``.
    """

    name: str
    bpp: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "anchor"
    source: str = ""
    settings: list[str] = field(default_factory=list)  # labels of measured points

    def sorted(self) -> "RDCurve":
        order = np.argsort(self.bpp)
        settings = [self.settings[i] for i in order] if self.settings else []
        return RDCurve(self.name, self.bpp[order], {k: v[order] for k, v in self.metrics.items()},
                       self.kind, self.source, settings)

    def quality(self, metric: str) -> np.ndarray | None:
        """The metric's values; ``ms-ssim-rgb-db`` is derived from linear MS-SSIM if needed."""
        if metric in self.metrics:
            return self.metrics[metric]
        if metric.endswith("-db") and metric[:-3] in self.metrics:
            return -10.0 * np.log10(1.0 - self.metrics[metric[:-3]])
        return None


def _floats(values, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise CodecLabError(f"{path}: '{key}' is not a list of numbers") from None


def _from_json(doc, path: Path, name: str | None) -> RDCurve:
    if not isinstance(doc, dict):
        raise CodecLabError(f"{path}: not an RD curve (expected a JSON object)")
    results = doc.get("results", doc)
    if not isinstance(results, dict) or "bpp" not in results:
        raise CodecLabError(f"{path}: no 'bpp' list (expected CompressAI result JSON)")
    bpp = _floats(results["bpp"], path, "bpp")
    metrics = {}
    for key, values in results.items():
        metric = _ALIASES.get(key, key)
        if key == "bpp" or not (metric.startswith("psnr") or metric.startswith("ms-ssim")):
            continue
        arr = _floats(values, path, key)
        if len(arr) != len(bpp):
            raise CodecLabError(f"{path}: '{key}' has {len(arr)} values but 'bpp' has {len(bpp)}")
        metrics[metric] = arr
    if not metrics:
        raise CodecLabError(f"{path}: no PSNR or MS-SSIM values")
    return RDCurve(name or str(doc.get("name") or path.stem), bpp, metrics, source=str(path))


def _from_text(text: str, path: Path, name: str | None, metric: str | None) -> RDCurve:
    rows, title = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            # tensorflow_compression: '# Aggregate rate-distortion data for "BPG (4:4:4)" on kodak.'
            m = re.search(r'data for "([^"]+)"', line)
            title = title or (m.group(1) if m else None)
            continue
        if not line:
            continue
        parts = re.split(r"[,\s]+", line)
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            raise CodecLabError(f"{path}: cannot read line {line!r} as 'bpp, value'") from None
    if not rows:
        raise CodecLabError(f"{path}: no 'bpp, value' rows")
    arr = np.asarray(rows, dtype=np.float64)
    metric = metric or _TFC_DIRS.get(path.parent.name, PSNR)
    return RDCurve(name or title or path.stem, arr[:, 0], {metric: arr[:, 1]}, source=str(path))


def read_curve(path, name: str | None = None, metric: str | None = None) -> RDCurve:
    """Read an RD curve from a CompressAI JSON, flat JSON or two-column text file.

    ``name`` overrides the curve's own name; ``metric`` names the value column of a text file.
    Raises ``CodecLabError`` (one-line message) for a missing or unreadable file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CodecLabError(f"cannot read curve {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise CodecLabError(f"{path}: not UTF-8 text (an RD curve is JSON or 'bpp, value' text)") from None
    if text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise CodecLabError(f"{path}: invalid JSON ({err.msg}, line {err.lineno})") from None
        except RecursionError:
            raise CodecLabError(f"{path}: JSON nested too deeply for an RD curve") from None
        return _from_json(doc, path, name).sorted()
    return _from_text(text, path, name, metric).sorted()


def to_compressai_dict(curve: RDCurve, description: str = "", extra: dict | None = None) -> dict:
    """The curve in CompressAI's result format (``{"name","description","results"}``)."""
    results = {"bpp": curve.bpp.tolist()}
    results.update({k: np.asarray(v).tolist() for k, v in curve.metrics.items()})
    results.update(extra or {})
    return {"name": curve.name, "description": description, "results": results}


def write_compressai_json(curve: RDCurve, path, description: str = "", extra: dict | None = None):
    """Write ``curve`` as CompressAI result JSON (readable by ``read_curve`` and CompressAI's
    plotting scripts); ``extra`` adds lists such as ``encoding_time``."""
    Path(path).write_text(json.dumps(to_compressai_dict(curve, description, extra), indent=2))
