"""Targets for one image: size, bpp and PSNR, met, not met and at their exact limits."""
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from ratecontrol_testmodel import rd_model, rd_models_dir, smooth  # noqa: F401  (fixtures)

import liccodec
from liccodec.codec import analyse, encode_analysis, encode_planes
from liccodec.container import read_header
from liccodec.errors import TargetError, UsageError
from liccodec.eval.metrics import psnr_rgb
from liccodec.imageio import split
from liccodec.ratecontrol import (Candidates, Target, TargetNotMet, boundary_search, bpp_limit, encode_to_target,
                                  parse_size)

LO, HI = 0, 11000  # the search range: levels 1-7, extrapolated to 0, residual layer to 11


@pytest.mark.parametrize("text, n", [("50000", 50000), ("50k", 50000), ("50K", 50000), ("1.5M", 1500000),
                                     ("2G", 2 * 10**9), ("64KiB", 65536), ("0.5k", 500), ("12.9", 12), ("3kb", 3000)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "k", "-5k", "5x", "0.1", "1e3", "5 k b"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        parse_size(text)


@pytest.mark.parametrize("bpp", [0.1, 0.25, 0.3, 1 / 3, 0.7, 2.0])
@pytest.mark.parametrize("pixels", [1, 6930, 393216, 24_000_000])
def test_bpp_limit_is_the_exact_largest_size(bpp, pixels):
    limit = bpp_limit(bpp, pixels)
    exact = Fraction(repr(bpp))
    assert Fraction(8 * limit, pixels) <= exact < Fraction(8 * (limit + 1), pixels)


def test_one_analysis_codes_the_same_files_as_plain_encodes(tiny, photo):
    for img in (Image.fromarray(photo), Image.fromarray(np.dstack([photo, photo[..., :1]]), "RGBA")):
        planes = split(img)
        an = analyse(planes, tiny)
        for q in (1000, 2250, 3000):
            assert encode_analysis(an, q).data == encode_planes(planes, tiny, q / 1000).data


def _sizes(an, qs):
    c = Candidates(an)
    return {q: c.size(q) for q in qs}


def test_size_target_gives_the_largest_quality_that_fits(rd_model, smooth):
    an = analyse(split(Image.fromarray(smooth)), rd_model)
    c = Candidates(an)
    target = (c.size(4000) + c.size(6000)) // 2
    r = encode_to_target(an, Target("size", target))
    assert len(r.data) <= target
    assert c.size(r.q_milli + 1) > target  # one thousandth more no longer fits
    coarse = [q for q in range(LO, HI + 1, 250) if c.size(q) <= target]
    assert r.q_milli >= max(coarse)
    # sizes move in 4-byte rANS words, with jumps; the search takes 11-13 encodes here, no
    # more than bisection from its first bracket would (3 probes + log2 of ~1,500 qualities)
    assert r.encodes <= 14 and r.decodes == 0
    assert liccodec.decode(r.data).size == an.planes.size
    assert "encodes" in r.note()


def test_target_equal_to_an_achievable_size_is_met_exactly(rd_model, smooth):
    an = analyse(split(Image.fromarray(smooth)), rd_model)
    for q in (1500, 4321, 6900):
        n = len(encode_analysis(an, q).data)
        r = encode_to_target(an, Target("size", n))
        assert len(r.data) == n and r.q_milli >= q


def test_size_target_below_the_smallest_file_is_not_met(rd_model, smooth):
    an = analyse(split(Image.fromarray(smooth)), rd_model)
    smallest = len(encode_analysis(an, LO).data)
    with pytest.raises(TargetNotMet) as e:
        encode_to_target(an, Target("size", smallest - 1))
    assert isinstance(e.value, TargetError) and e.value.exit_code == 8
    assert e.value.closest.nbytes == smallest and f"{smallest:,} bytes" in str(e.value)
    r = encode_to_target(an, Target("size", smallest))  # the exact limit is met
    assert len(r.data) == smallest


def test_size_target_above_the_largest_file_gives_the_highest_quality(rd_model, smooth):
    an = analyse(split(Image.fromarray(smooth)), rd_model)
    largest = len(encode_analysis(an, HI).data)
    for target in (largest, largest * 10):
        r = encode_to_target(an, Target("size", target))
        assert r.q_milli == HI and len(r.data) == largest


def test_bpp_target(rd_model, smooth):
    planes = split(Image.fromarray(smooth))
    pixels = smooth.shape[0] * smooth.shape[1]
    an = analyse(planes, rd_model)
    mid = len(encode_analysis(an, 5000).data)
    for bpp in (8 * mid / pixels, round(8 * mid / pixels, 3), 0.1):
        r = encode_to_target(an, Target("bpp", bpp))
        assert 8 * len(r.data) / pixels <= bpp
        if r.q_milli < HI:  # bpp as the decimal typed, exactly (a float comparison can round up)
            assert len(encode_analysis(an, r.q_milli + 1).data) > bpp_limit(bpp, pixels)


def test_alpha_counts_in_the_size(rd_model, smooth):
    rgba = np.dstack([smooth, (np.arange(smooth.shape[1]) % 256).astype(np.uint8)[None, :].repeat(smooth.shape[0], 0)])
    planes = split(Image.fromarray(rgba, "RGBA"))
    an = analyse(planes, rd_model)
    n = len(encode_analysis(an, 3000).data)
    r = encode_to_target(planes, Target("size", n), rd_model)
    assert len(r.data) == n and "alpha" in read_header(r.data).streams


def test_psnr_target_gives_a_small_file_that_reaches_it(rd_model, smooth):
    an = analyse(split(Image.fromarray(smooth)), rd_model)
    c = Candidates(an)
    goal = round((c.psnr(2000) + c.psnr(5000)) / 2, 2)
    r = encode_to_target(an, Target("psnr", goal))
    decoded = np.asarray(liccodec.decode(r.data).convert("RGB"))
    assert r.psnr == pytest.approx(psnr_rgb(smooth, decoded), abs=1e-9)
    assert r.psnr >= goal
    # every smaller file the search decoded falls short, and the next one down is within tolerance
    shorter = [p for p in r.probes if p.psnr is not None and p.nbytes < len(r.data)]
    assert shorter and all(p.psnr < goal for p in shorter)
    assert len(r.data) - max(p.nbytes for p in shorter) <= max(0.005 * len(r.data), 8) or \
        max(p.q_milli for p in shorter) == r.q_milli - 1
    assert r.decodes <= 12 and r.decodes == sum(p.psnr is not None for p in r.probes)


def test_psnr_target_beyond_the_highest_quality_is_not_met(rd_model, smooth):
    an = analyse(split(Image.fromarray(smooth)), rd_model)
    best = Candidates(an).psnr(HI)
    with pytest.raises(TargetNotMet) as e:
        encode_to_target(an, Target("psnr", best + 1))
    assert e.value.exit_code == 8 and e.value.closest.psnr == pytest.approx(best)
    assert f"{best:.2f} dB" in str(e.value)


def test_psnr_target_under_the_lowest_quality_gives_the_smallest_file(rd_model, smooth):
    an = analyse(split(Image.fromarray(smooth)), rd_model)
    worst = Candidates(an).psnr(LO)
    r = encode_to_target(an, Target("psnr", worst - 1))
    assert r.q_milli == LO


@pytest.mark.parametrize("kind, value", [("size", 0), ("bpp", -1.0), ("psnr", math.nan), ("speed", 3.0)])
def test_bad_targets(kind, value):
    with pytest.raises(UsageError):
        Target(kind, value)


def test_boundary_search_matches_exhaustive_search_on_monotone_steps():
    rng = np.random.default_rng(0)
    for trial in range(200):
        lo, hi = 1000, 1000 + int(rng.integers(1, 6000))
        qs = np.arange(lo, hi + 1)
        # log-rate: increasing with plateaus (as file sizes are), random curvature
        steps = rng.random(len(qs)) < rng.uniform(0.05, 1.0)
        values = np.cumsum(steps * rng.exponential(1e-3, len(qs)) * rng.uniform(0.2, 5))
        goal = float(rng.uniform(values[0] - 0.01, values[-1] + 0.01))
        calls = []

        def test(q):
            calls.append(q)
            v = float(values[q - lo])
            return v <= goal, v

        br = boundary_search(test, goal, lo, hi, start=int(rng.integers(lo, hi + 1)), slope=4e-4)
        fitting = qs[values <= goal]
        expect_below = int(fitting.max()) if fitting.size else None
        assert br.below == expect_below
        assert br.above == (None if expect_below == hi else (lo if expect_below is None else expect_below + 1))
        assert len(calls) == len(set(calls)) and len(calls) <= 40


def test_boundary_search_stays_consistent_on_a_wiggly_function():
    lo, hi = 0, 5000
    values = np.linspace(20, 30, hi + 1) + 0.8 * np.sin(np.arange(hi + 1) / 37.0)
    probed = {}

    def test(q):
        probed[q] = float(values[q])
        return probed[q] < 25.0, probed[q]

    br = boundary_search(test, 25.0, lo, hi, start=4000, slope=2e-3)
    assert br.above - br.below == 1
    assert probed[br.below] < 25.0 <= probed[br.above]
