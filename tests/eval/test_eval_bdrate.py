"""BD-rate / BD-PSNR against cases worked out by hand."""
from __future__ import annotations

import json
import math

import pytest

from liccodec.eval.bdrate import bd_psnr, bd_rate

RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNRS = [27.0, 30.1, 33.0, 35.4, 38.2]


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25, 3.0])
def test_rate_scaled_by_constant(factor: float) -> None:
    # Same qualities at factor x the rate: log-rate shifts by log(factor) everywhere.
    got = bd_rate(RATES, PSNRS, [r * factor for r in RATES], PSNRS)
    assert got == pytest.approx(100 * (factor - 1), abs=1e-9)


def test_parallel_lines_partial_overlap() -> None:
    # ln R = (q - 30) / 10 for the anchor, (q - 35) / 10 for the test, each from two points
    # (PCHIP is the straight line). Overlap q in [35, 40]; gap -0.5 -> exp(-0.5) - 1.
    anchor_q, test_q = [30.0, 40.0], [35.0, 45.0]
    anchor_r = [math.exp((q - 30) / 10) for q in anchor_q]
    test_r = [math.exp((q - 35) / 10) for q in test_q]
    assert bd_rate(anchor_r, anchor_q, test_r, test_q) == pytest.approx(100 * math.expm1(-0.5))


def test_pchip_hand_computed() -> None:
    # Anchor ln R = 0, 1, 2 at q = 30, 35, 40 (a line: integral 10).
    # Test ln R = 0, 0.5, 2. PCHIP slopes by hand: d0 = 0 (end formula gives 0),
    # d1 = harmonic mean of secants 0.1 and 0.3 with equal weights = 0.15,
    # d2 = ((2*5+5)*0.3 - 5*0.1) / 10 = 0.4.
    # Hermite integral per segment h*(y0+y1)/2 + h^2*(d0-d1)/12:
    #   1.25 - 0.3125 + 6.25 - 0.5208333 = 6.6666667 = 20/3.
    # Mean gap (20/3 - 10) / 10 = -1/3, BD-rate = exp(-1/3) - 1.
    q = [30.0, 35.0, 40.0]
    anchor = [math.exp(v) for v in (0.0, 1.0, 2.0)]
    test = [math.exp(v) for v in (0.0, 0.5, 2.0)]
    assert bd_rate(anchor, q, test, q) == pytest.approx(100 * math.expm1(-1 / 3), rel=1e-9)


def test_order_and_duplicates_do_not_matter() -> None:
    shuffled = [(RATES[i], PSNRS[i]) for i in (3, 0, 4, 2, 1)]
    dup = shuffled + [(RATES[2], PSNRS[2])]
    r, q = zip(*dup)
    test = [x * 0.7 for x in RATES]
    assert bd_rate(list(r), list(q), test, PSNRS) == pytest.approx(-30.0)


def test_duplicate_quality_merges_by_geometric_mean() -> None:
    # Two points at q=35 with rates e^0 and e^2 become one at ln R = 1.
    anchor_q, anchor_r = [30.0, 35.0, 35.0, 40.0], [math.exp(v) for v in (0.0, 0.0, 2.0, 2.0)]
    line_r = [math.exp(v) for v in (0.0, 1.0, 2.0)]
    assert bd_rate(anchor_r, anchor_q, line_r, [30.0, 35.0, 40.0]) == pytest.approx(0.0, abs=1e-9)


def test_non_finite_points_are_dropped() -> None:
    r = RATES + [8.0]
    q = PSNRS + [math.inf]  # a lossless point
    assert bd_rate(r, q, [x * 2 for x in RATES], PSNRS) == pytest.approx(100.0)


def test_no_overlap_is_none() -> None:
    assert bd_rate([0.1, 0.2], [25.0, 28.0], [0.5, 1.0], [30.0, 33.0]) is None
    assert bd_rate([0.1, 0.2], [25.0, 28.0], [0.5, 1.0], [28.0, 33.0]) is None  # touching
    assert bd_rate([0.1], [25.0], [0.1, 0.2], [25.0, 28.0]) is None  # one point
    assert bd_psnr([0.1, 0.2], [25.0, 28.0], [0.5, 1.0], [30.0, 33.0]) is None


def test_bd_psnr_constant_shift() -> None:
    # PSNR = 30 + 10 ln R for both; the test reaches each quality at 0.8x the rate, so at
    # equal rate it is 10 ln(1/0.8) dB better.
    anchor_r = [0.1, 0.3, 0.9, 2.0]
    anchor_q = [30 + 10 * math.log(r) for r in anchor_r]
    test_r = [r * 0.8 for r in anchor_r]
    assert bd_psnr(anchor_r, anchor_q, test_r, anchor_q) == pytest.approx(-10 * math.log(0.8))


def test_published_bpg_against_vtm(anchors_dir) -> None:
    # The anchors' README quotes +22.0% for BPG against VTM with PCHIP over the shared range.
    def load(name: str) -> dict:
        return json.loads((anchors_dir / "compressai_kodak" / name).read_text())["results"]

    vtm, bpg = load("vtm.json"), load("bpg_444_x265_ycbcr.json")
    got = bd_rate(vtm["bpp"], vtm["psnr-rgb"], bpg["bpp"], bpg["psnr-rgb"])
    assert got == pytest.approx(22.0, abs=0.05)
