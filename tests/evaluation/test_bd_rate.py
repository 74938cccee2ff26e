"""BD-rate: the published Kodak curves against VTM, cross-checked with the independent
`bjontegaard` package, and exact properties of the integrals."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeclab.evaluation.bd_rate import bd, bd_rate

KODAK = Path(__file__).resolve().parents[3] / "shared/data/reference_rd/compressai/kodak"
needs_shared = pytest.mark.skipif(not KODAK.is_dir(), reason="../shared/data is not present")

# A VTM-like anchor and a test curve (bpp, PSNR), made up but realistic.
ANCHOR = ([0.05, 0.11, 0.25, 0.49, 0.87, 1.43], [26.1, 28.5, 31.2, 34.3, 37.4, 40.4])
TEST = ([0.06, 0.14, 0.30, 0.62, 1.10, 1.90], [25.9, 28.4, 31.0, 34.1, 37.0, 40.2])


def _load(name):
    r = json.loads((KODAK / name).read_text())["results"]
    return r["bpp"], r["psnr-rgb"]


@needs_shared
@pytest.mark.parametrize("name", [
    "compressai-bmshj2018-hyperprior_mse_cuda.json", "compressai-mbt2018_mse_cuda.json",
    "compressai-cheng2020-anchor_mse_cuda.json", "bpg_444_x265_ycbcr.json", "jpeg.json", "av1.json",
])
@pytest.mark.parametrize("method", ["cubic", "pchip", "akima"])
def test_matches_bjontegaard_package_on_published_curves(name, method):
    bj = pytest.importorskip("bjontegaard")
    anchor, test = _load("vtm.json"), _load(name)
    ours = bd(*anchor, *test, method=method)
    kw = dict(method=method, require_matching_points=False, min_overlap=0)
    assert ours.bd_rate == pytest.approx(bj.bd_rate(*anchor, *test, **kw), abs=1e-6)
    assert ours.bd_psnr == pytest.approx(bj.bd_psnr(*anchor, *test, **kw), abs=1e-6)


@pytest.mark.parametrize("method", ["cubic", "pchip", "akima"])
def test_matches_bjontegaard_package_on_synthetic_curves(method):
    bj = pytest.importorskip("bjontegaard")
    ours = bd(*ANCHOR, *TEST, method=method)
    assert ours.bd_rate == pytest.approx(bj.bd_rate(*ANCHOR, *TEST, method=method), abs=1e-6)
    assert ours.bd_psnr == pytest.approx(bj.bd_psnr(*ANCHOR, *TEST, method=method), abs=1e-6)
    assert ours.bd_rate > 0 and ours.bd_psnr < 0  # TEST is worse everywhere


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(0.3, 3.0), shift=st.floats(-3.0, 3.0),
       method=st.sampled_from(["cubic", "pchip", "akima"]))
def test_rate_scaling_and_quality_shift_are_recovered_exactly(scale, shift, method):
    # A curve with every rate times k has BD-rate 100 (k - 1) whatever the fit: the log-rate
    # interpolants differ by the constant log k. Likewise a constant PSNR shift is the BD-PSNR.
    r, q = np.array(ANCHOR[0]), np.array(ANCHOR[1])
    assert bd(r, q, r * scale, q, method).bd_rate == pytest.approx(100 * (scale - 1), abs=1e-6)
    assert bd(r, q, r, q + shift, method).bd_psnr == pytest.approx(shift, abs=1e-9)


def test_identical_curves_give_zero_and_point_order_does_not_matter():
    res = bd(*ANCHOR, *ANCHOR)
    assert res.bd_rate == pytest.approx(0, abs=1e-9) and res.bd_psnr == pytest.approx(0, abs=1e-9)
    shuffled = [list(reversed(v)) for v in TEST]
    assert bd(*ANCHOR, *shuffled).bd_rate == pytest.approx(bd(*ANCHOR, *TEST).bd_rate)


def test_overlap_range_is_reported():
    res = bd(*ANCHOR, *TEST)
    assert res.quality_range == pytest.approx((26.1, 40.2))
    assert res.bpp_range == pytest.approx((0.06, 1.43))
    assert 0.9 < res.overlap <= 1.0


def test_too_few_points_is_a_warning_not_a_number():
    res = bd(*ANCHOR, TEST[0][:3], TEST[1][:3])
    assert res.bd_rate is None and not res.ok
    assert "3 points" in res.warnings[0]
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(*ANCHOR, TEST[0][:3], TEST[1][:3])


def test_little_overlap_is_a_warning_not_a_number():
    high = ([1.0, 1.5, 2.2, 3.0, 4.0], [39.0, 41.0, 43.0, 45.0, 47.0])  # overlaps 39-40.4 only
    res = bd(*ANCHOR, *high)
    assert res.bd_rate is None and "overlap" in res.warnings[0]
    assert res.quality_range == pytest.approx((39.0, 40.4))
    disjoint = ([2.0, 3.0, 4.0, 5.0], [41.0, 43.0, 45.0, 47.0])
    assert "do not overlap" in bd(*ANCHOR, *disjoint).warnings[0]


def test_a_curve_below_the_anchor_at_every_rate_has_a_bd_psnr_and_no_bd_rate():
    r, q = np.array(ANCHOR[0]), np.array(ANCHOR[1])
    res = bd(r, q, r, q - 20, "pchip")  # the same rates, 20 dB lower: the quality ranges are apart
    assert res.bd_rate is None and "do not overlap" in res.warnings[0]
    assert res.bd_psnr == pytest.approx(-20, abs=1e-9)
    # Rates that barely overlap give neither.
    far = bd(r, q, r * 1e3, q - 20, "pchip")
    assert far.bd_rate is None and far.bd_psnr is None and "no BD-PSNR" in far.warnings[-1]


def test_non_monotonic_curve_is_refused():
    res = bd(*ANCHOR, [0.1, 0.2, 0.3, 0.4], [30.0, 31.0, 30.5, 32.0])
    assert res.bd_rate is None and "rise" in res.warnings[0]


def test_bad_input_raises():
    with pytest.raises(ValueError, match="method"):
        bd(*ANCHOR, *TEST, method="linear")
    with pytest.raises(ValueError, match="positive"):
        bd(*ANCHOR, [0.0, 0.1, 0.2, 0.3], [1.0, 2.0, 3.0, 4.0])


def test_duplicate_rates_nan_points_and_falling_curves_are_named():
    from codeclab.evaluation.bd_rate import bd

    anchor = ([0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.0])
    duplicates = bd(*anchor, [0.3, 0.3, 1.1, 2.1], [28.5, 29.0, 34.5, 37.5])
    assert not duplicates.ok and "test curve has several points at 0.3 bpp; BD needs distinct rates" in duplicates.warnings
    with_nan = bd(*anchor, [0.3, 0.6, float("nan"), 1.1, 2.1], [28.5, 31.5, 33.0, 34.5, 37.5])
    assert with_nan.ok and "test point 3 (nan bpp, 33.0) dropped: not a finite number" in with_nan.warnings
    falling = bd(*anchor, [0.3, 0.6, 1.1, 2.1], [28.5, 31.5, 31.0, 37.5])
    assert not falling.ok
    assert "test curve quality does not rise strictly with rate (31 at 1.1 bpp after 31.5 at 0.6 bpp)" in falling.warnings
