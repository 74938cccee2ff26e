"""Bjontegaard delta rate (BD-rate) and delta quality (BD-PSNR) between two RD curves.

Two interpolation methods are offered:

* ``"cubic"`` -- the original method of G. Bjontegaard, "Calculation of average PSNR differences
  between RD-curves", ITU-T VCEG-M33, Austin, 2001. A single least-squares cubic polynomial
  ``log(R) = p(D)`` is fitted through all points of each curve (exact interpolation when a curve
  has 4 points, a smoothing fit when it has more), and the polynomials are integrated exactly
  over the overlapping quality interval.
* ``"pchip"`` (and ``"akima"``) -- the piecewise-cubic variant used by JVET common test
  conditions (JVET-K1010 / the CTC BD-rate spreadsheet; F. Bossen, "Common test conditions and
  software reference configurations"). ``log(R)`` is interpolated through the points with a
  monotone piecewise cubic Hermite interpolant (scipy's ``PchipInterpolator``; ``akima`` uses
  ``Akima1DInterpolator``) and each piece is integrated exactly.

BD-rate (%)  = 100 * (exp( mean over overlap of [log R_test(D) - log R_anchor(D)] ) - 1)
BD-PSNR (dB) = mean over overlap of [D_test(log R) - D_anchor(log R)]

Negative BD-rate means the test curve needs fewer bits than the anchor for the same quality.
The integrals are exact for the fitted curves; the result approximates the true average gain
only as well as the interpolant approximates the codecs' real RD behaviour between the points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("cubic", "pchip", "akima")
MIN_POINTS = 4
# Overlap (in the quality metric) below this fraction of the shorter curve's range is too small
# for the average to mean anything; the result then carries a warning and no number.
DEFAULT_MIN_OVERLAP = 0.5


@dataclass
class BDResult:
    """Outcome of one BD comparison.

    ``bd_rate`` (%) and ``bd_psnr`` (quality units, dB for PSNR) are ``None`` when the comparison
    was refused; ``warnings`` then says why. ``quality_range`` and ``bpp_range`` are the
    overlapping intervals integrated over; ``overlap`` is the quality overlap as a fraction of
    the shorter curve's quality range.
    """

    method: str
    bd_rate: float | None = None
    bd_psnr: float | None = None
    quality_range: tuple[float, float] | None = None
    bpp_range: tuple[float, float] | None = None
    overlap: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bd_rate is not None


def _prepare(rate, quality, label: str, warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sort a curve by rate; points with a NaN or infinite value are dropped, each with a warning."""
    rate = np.asarray(rate, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    if rate.shape != quality.shape or rate.ndim != 1:
        raise ValueError(f"{label}: rate and quality must be 1-D and of equal length")
    keep = np.isfinite(rate) & np.isfinite(quality)
    for i in np.flatnonzero(~keep):
        warnings.append(f"{label} point {i + 1} ({rate[i]} bpp, {quality[i]}) dropped: not a finite number")
    rate, quality = rate[keep], quality[keep]
    if np.any(rate <= 0):
        raise ValueError(f"{label}: rates must be positive")
    order = np.argsort(rate, kind="stable")
    return rate[order], quality[order]


def _shape_problem(label: str, rate: np.ndarray, quality: np.ndarray) -> str | None:
    """Why a sorted curve cannot be interpolated (duplicate rates, quality not rising), or None."""
    if len(rate) < MIN_POINTS:
        return f"{label} curve has {len(rate)} points; BD needs at least {MIN_POINTS}"
    same = np.flatnonzero(np.diff(rate) == 0)
    if same.size:
        return f"{label} curve has several points at {rate[same[0]]:g} bpp; BD needs distinct rates"
    falls = np.flatnonzero(np.diff(quality) <= 0)
    if falls.size:
        i = falls[0]
        return (f"{label} curve quality does not rise strictly with rate ({quality[i + 1]:g} at {rate[i + 1]:g} bpp "
                f"after {quality[i]:g} at {rate[i]:g} bpp)")
    return None


def _interpolant(x: np.ndarray, y: np.ndarray, method: str):
    """Return (f, integral(a, b)) for y = f(x) with the chosen method; x must be increasing."""
    if method == "cubic":
        poly = np.polynomial.Polynomial.fit(x, y, 3)
        anti = poly.integ()
        return poly, lambda a, b: anti(b) - anti(a)
    # scipy costs 0.2 s to import; only the piecewise methods need it.
    from scipy.interpolate import Akima1DInterpolator, PchipInterpolator

    cls = PchipInterpolator if method == "pchip" else Akima1DInterpolator
    interp = cls(x, y)
    return interp, lambda a, b: float(interp.integrate(a, b))


def _mean_gap(xa, ya, xt, yt, lo, hi, method) -> float:
    """Mean of (f_test - f_anchor) over [lo, hi], each f interpolating y over x."""
    _, int_a = _interpolant(xa, ya, method)
    _, int_t = _interpolant(xt, yt, method)
    return (int_t(lo, hi) - int_a(lo, hi)) / (hi - lo)


def bd(
    rate_anchor,
    quality_anchor,
    rate_test,
    quality_test,
    method: str = "cubic",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> BDResult:
    """Compute BD-rate and BD-quality of a test curve against an anchor curve.

    ``rate_*`` are bits per pixel (any positive rate unit works: only ratios matter),
    ``quality_*`` a quality metric that increases with rate (PSNR in dB, or MS-SSIM in dB).
    Curves need at least 4 points and quality strictly increasing with rate; otherwise the result
    has no numbers and a warning instead. BD-rate needs the quality ranges to overlap by
    ``min_overlap`` of the shorter range; BD-quality needs that, or the log-rate ranges to overlap
    by as much.
    """
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; choose one of {', '.join(METHODS)}")
    res = BDResult(method=method)
    ra, qa = _prepare(rate_anchor, quality_anchor, "anchor", res.warnings)
    rt, qt = _prepare(rate_test, quality_test, "test", res.warnings)
    problems = [p for p in (_shape_problem("anchor", ra, qa), _shape_problem("test", rt, qt)) if p]
    if problems:
        res.warnings.extend(problems)
        return res

    lra, lrt = np.log(ra), np.log(rt)
    r_lo, r_hi = max(lra[0], lrt[0]), min(lra[-1], lrt[-1])
    if r_hi > r_lo:
        res.bpp_range = (float(np.exp(r_lo)), float(np.exp(r_hi)))
    q_lo, q_hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    shorter = min(qa[-1] - qa[0], qt[-1] - qt[0])
    res.overlap = max(0.0, (q_hi - q_lo) / shorter) if shorter > 0 else 0.0
    if res.overlap <= 0:
        res.warnings.append("quality ranges do not overlap")
    else:
        res.quality_range = (float(q_lo), float(q_hi))
        if res.overlap < min_overlap:
            res.warnings.append(
                f"quality overlap is {100 * res.overlap:.0f}% of the shorter curve's range "
                f"(< {100 * min_overlap:.0f}%); BD numbers would extrapolate"
            )
        else:
            # BD-rate: log-rate as a function of quality, averaged over the common quality interval.
            res.bd_rate = float(100.0 * np.expm1(_mean_gap(qa, lra, qt, lrt, q_lo, q_hi, method)))
    # BD-quality: quality as a function of log-rate, averaged over the common log-rate interval,
    # which may be wide where the quality ranges are not (a curve far below the anchor at every
    # rate has a BD-PSNR and no BD-rate).
    rate_shorter = min(lra[-1] - lra[0], lrt[-1] - lrt[0])
    rate_overlap = (r_hi - r_lo) / rate_shorter if rate_shorter > 0 else 0.0
    if res.bpp_range is None:
        res.warnings.append("rate ranges do not overlap; no BD-PSNR")
    elif res.bd_rate is not None or rate_overlap >= min_overlap:
        res.bd_psnr = float(_mean_gap(lra, qa, lrt, qt, r_lo, r_hi, method))
    return res


def bd_rate(rate_anchor, quality_anchor, rate_test, quality_test, method: str = "cubic") -> float:
    """BD-rate in percent; raises ``ValueError`` with the warning when it cannot be computed."""
    res = bd(rate_anchor, quality_anchor, rate_test, quality_test, method)
    if res.bd_rate is None:
        raise ValueError("; ".join(res.warnings))
    return res.bd_rate
