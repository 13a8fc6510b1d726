"""Folder allocation: exact and Lagrangian against brute force, and a budget never exceeded."""
import itertools

import numpy as np
import pytest
from PIL import Image
from ratecontrol_testmodel import rd_model, rd_models_dir, smooth_image  # noqa: F401  (fixtures)

import liccodec
from liccodec.ratecontrol.allocate import (Choice, RDPoints, allocate, brute_force, fixed_quality, fixed_quality_estimate,
                               measure, quality_grid, realise, solve_exact, solve_lagrangian, upper_hull)
from liccodec.codec import analyse
from liccodec.eval.metrics import psnr_rgb
from liccodec.imageio import split
from liccodec.ratecontrol import TargetNotMet


def _points(rng, n_images, n_q, concave=True):
    out = []
    for i in range(n_images):
        sizes = np.cumsum(rng.integers(50, 400, n_q)) + rng.integers(100, 1000)
        if concave:  # diminishing returns, the usual shape
            quality = 20 + 4 * np.log(sizes / sizes[0] + 0.2) + rng.normal(0, 0.05, n_q)
        else:
            quality = np.sort(rng.uniform(20, 40, n_q))
        out.append(RDPoints(f"img{i}", 1000, list(range(1000, 1000 + 1000 * n_q, 1000)),
                            [int(s) for s in sizes], [float(q) for q in quality]))
    return out


def test_quality_grid():
    assert quality_grid(1, 7, 13) == list(range(1000, 7001, 500))
    assert quality_grid(1, 3, 2) == [1000, 3000]


def test_upper_hull_drops_dominated_and_concave_points():
    p = RDPoints("x", 1, [1, 2, 3, 4, 5, 6], [100, 200, 250, 300, 400, 500], [10.0, 14.0, 13.0, 16.5, 18.0, 18.0])
    # (250, 13) is dominated, (500, 18) gains nothing, (300, 16.5) lies above the chord 200-400
    assert upper_hull(p) == [0, 1, 3, 4]
    q = RDPoints("y", 1, [1, 2, 3], [100, 200, 300], [10.0, 11.0, 15.0])  # the middle is under the chord
    assert upper_hull(q) == [0, 2]


@pytest.mark.parametrize("concave", [True, False])
def test_exact_and_lagrangian_against_brute_force(concave):
    """3 images x 4 qualities: every budget from infeasible to everything-at-the-top."""
    rng = np.random.default_rng(7 if concave else 8)
    gaps = []
    for trial in range(12):
        points = _points(rng, 3, 4, concave)
        totals = sorted({sum(c) for c in itertools.product(*(p.nbytes for p in points))})
        budgets = [totals[0] - 1] + list(rng.choice(totals, 6)) + [int(rng.integers(totals[0], totals[-1] + 50))]
        for budget in budgets:
            budget = int(budget)
            if budget < totals[0]:
                for solve in (solve_exact, solve_lagrangian, brute_force):
                    with pytest.raises(TargetNotMet):
                        solve(points, budget)
                continue
            best = brute_force(points, budget)
            exact = solve_exact(points, budget)
            lagr = solve_lagrangian(points, budget)
            assert exact.mean_quality == pytest.approx(best.mean_quality, abs=1e-9)
            assert exact.total_bytes <= budget and lagr.total_bytes <= budget
            assert lagr.mean_quality <= exact.mean_quality + 1e-9 <= lagr.bound + 2e-9
            gaps.append(exact.mean_quality - lagr.mean_quality)
    assert max(gaps) > 0  # the Lagrangian does lose sometimes: the exact solver is not redundant


def test_lagrangian_is_exact_at_its_own_breakpoints():
    rng = np.random.default_rng(3)
    points = _points(rng, 5, 6)
    hulls = [upper_hull(p) for p in points]
    start = sum(p.nbytes[h[0]] for p, h in zip(points, hulls))
    lagr = solve_lagrangian(points, start)  # the budget of the sweep's first point
    assert lagr.total_bytes == start
    assert lagr.mean_quality == pytest.approx(solve_exact(points, start).mean_quality)


def test_allocate_prefers_the_exact_choice():
    rng = np.random.default_rng(11)
    points = _points(rng, 8, 13)
    budget = sum(p.nbytes[6] for p in points)
    chosen, lagr = allocate(points, budget)
    assert chosen.method.startswith("exact") and chosen.mean_quality >= lagr.mean_quality
    # and it beats one fixed grid quality at the same budget
    assert chosen.mean_quality >= np.mean([p.quality[6] for p in points]) - 1e-9


@pytest.fixture()
def folder(rd_model):
    images = [smooth_image(seed) for seed in (1, 2, 3, 4)]
    analyses = [analyse(split(Image.fromarray(img)), rd_model) for img in images]
    grid = quality_grid(1, 7, 7)
    points = [measure(a, grid, "psnr", str(i)) for i, a in enumerate(analyses)]
    return images, analyses, points


def test_measure_is_real(folder):
    images, analyses, points = folder
    p = points[0]
    for q, n, quality in zip(p.q_milli, p.nbytes, p.quality):
        data = liccodec.encode(Image.fromarray(images[0]), model=analyses[0].spec.id, quality=q / 1000)
        assert len(data) == n
        assert quality == pytest.approx(psnr_rgb(images[0], np.asarray(liccodec.decode(data))), abs=1e-9)


def test_realised_files_never_exceed_the_budget(folder):
    images, analyses, points = folder
    low, high = sum(p.nbytes[0] for p in points), sum(p.nbytes[-1] for p in points)
    filled = 0
    for budget in (low, low + 7, (low + high) // 2, (2 * low + high) // 3, high - 1, high + 1000):
        exact, _ = allocate(points, budget)
        files = {}
        produced = realise(points, exact, budget, analysis_of=lambda i: analyses[i],
                           write=lambda i, enc: files.__setitem__(i, enc.data))
        total = sum(len(d) for d in files.values())
        assert total <= budget and total == sum(p.nbytes for p in produced)
        assert total >= exact.total_bytes  # the slack only ever raises qualities
        for i, made in enumerate(produced):  # reported qualities are those of the real files
            assert made.quality == pytest.approx(psnr_rgb(images[i], np.asarray(liccodec.decode(files[i]))))
            assert made.q_milli >= points[i].q_milli[exact.index[i]]
        filled += sum(m.filled for m in produced)
    assert filled  # the slack was spent at least once


def test_realise_steps_down_when_a_file_is_larger_than_measured(folder):
    images, analyses, points = folder
    lying = [RDPoints(p.name, p.pixels, p.q_milli, list(p.nbytes), p.quality) for p in points]
    lying[0].nbytes[3] -= 12  # the plan believes image 0's file is smaller than it is
    choice = Choice.of("fixed", lying, [3] * len(points))
    budget = choice.total_bytes
    files = {}
    produced = realise(lying, choice, budget, analysis_of=lambda i: analyses[i],
                       write=lambda i, enc: files.__setitem__(i, enc.data), fill=False)
    assert sum(len(d) for d in files.values()) <= budget
    assert produced[0].q_milli < points[0].q_milli[3]
    assert [m.q_milli for m in produced[1:]] == [p.q_milli[3] for p in points[1:]]


def test_fixed_quality_baseline(folder):
    images, analyses, points = folder
    budget = sum(p.nbytes[4] for p in points) + 5
    fixed = fixed_quality(analyses, points, budget)
    assert fixed.total_bytes <= budget and fixed.q_milli >= points[0].q_milli[4]
    over = sum(len(liccodec.encode(Image.fromarray(img), model=a.spec.id, quality=(fixed.q_milli + 1) / 1000))
               for img, a in zip(images, analyses))
    assert fixed.q_milli == 7000 or over > budget
    q_est, _, _ = fixed_quality_estimate(points, budget)
    assert abs(q_est - fixed.q_milli) <= 1000


def test_ms_ssim_metric(rd_model):
    from liccodec.ratecontrol.allocate import score
    from liccodec.errors import UsageError

    an = analyse(split(Image.fromarray(smooth_image(5))), rd_model)
    p = measure(an, [1000, 4000, 7000], "ms-ssim")
    assert all(0 < v <= 1 for v in p.quality) and p.quality[0] < p.quality[-1]
    small = analyse(split(Image.fromarray(smooth_image(5, 100, 120))), rd_model)
    with pytest.raises(UsageError, match="MS-SSIM"):
        measure(small, [1000], "ms-ssim")
    assert score(small.planes.rgb, liccodec.encode(Image.fromarray(small.planes.rgb), model=rd_model), "psnr") > 0
