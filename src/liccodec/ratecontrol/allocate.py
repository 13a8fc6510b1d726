"""Bit allocation across a folder: the quality of each image chosen to maximise the folder's
mean quality under a total byte budget that is never exceeded.

Formulation (the resource allocation of PO-DKIC: Fu, Zhang, Wang, Chen, "Perceptual-oriented
Learned Image Compression with Dynamic Kernel", arXiv:2401.13967, 2024). Image ``i`` coded at
grid quality ``k`` gives a file of ``R[i,k]`` bytes whose decoded 8-bit RGB has quality
``D[i,k]`` (PSNR in dB, or MS-SSIM). With ``x[i,k]`` in {0, 1}::

    maximise   sum_ik D[i,k] x[i,k]
    subject to sum_k  x[i,k] = 1          for every image i   (one quality per image)
               sum_ik R[i,k] x[i,k] <= B                      (the budget, bytes)

a multiple-choice knapsack, solved two ways:

* exactly (:func:`solve_exact`): ``scipy.optimize.milp`` (HiGHS branch and bound) with a
  relative gap of 0;
* by a Lagrangian sweep (:func:`solve_lagrangian`): for a multiplier ``lam`` each image on its
  own picks ``argmax_k D - lam R``, a vertex of the upper convex hull of its (R, D) points.
  Lowering ``lam`` from infinity moves one image at a time one hull vertex up, in decreasing
  order of the hull segments' slopes dD/dR, so the sweep is a sort of every hull segment. The
  last point of the sweep within the budget is the Lagrangian solution; adding the fraction
  of the next segment that would fill the budget exactly gives the value of the LP relaxation,
  an upper bound on the exact optimum (:attr:`Choice.bound`).

Every number is measured, not modelled: per image one analysis (``g_a``), then at each grid
quality a complete file (its exact size, :func:`liccodec.codec.encode_analysis`) and its decode.

Realisation (:func:`realise`) writes the files. The grid leaves part of the budget unspent;
that slack goes to the images whose next grid segment is steepest, each raised to the largest
quality (in thousandths) whose real file still fits, found with the cheap re-encodes of
:func:`liccodec.ratecontrol.boundary_search`. Before a file is accepted it is checked against
what is left of the budget after reserving the planned sizes of the files still to come, and
its quality is stepped down if it would not fit, so the total never exceeds the budget.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from liccodec.codec import Analysis, Encoded, decode_rgb, encode_analysis
from liccodec.container import read_header
from liccodec.errors import LicError, UsageError
from liccodec.ratecontrol import (MILLI, PSNR_CAP, RATE_PER_LOG_LAMBDA, Probe, TargetNotMet, boundary_search,
                                  log_lambda_per_milli, quality_bounds)

Metric = Literal["psnr", "ms-ssim"]
METRICS: tuple[str, ...] = ("psnr", "ms-ssim")
#: Grid qualities per image by default: 13 is a step of 0.5 over msh.mse's range 1-7.
DEFAULT_GRID = 13
#: Folders with more (image, quality) pairs than this are allocated by the Lagrangian sweep only.
MAX_EXACT_VARIABLES = 200_000


def quality_grid(q_min: float, q_max: float, n: int = DEFAULT_GRID) -> list[int]:
    """``n`` qualities (thousandths) evenly over ``[q_min, q_max]``, both ends included."""
    lo, hi = round(q_min * MILLI), round(q_max * MILLI)
    if n < 2 or hi <= lo:
        return [lo]
    return sorted({round(float(q)) for q in np.linspace(lo, hi, n)})


def score(reference_rgb: np.ndarray, data: bytes, metric: Metric) -> float:
    """Quality of a .lic file's decoded 8-bit RGB against the original: PSNR (dB, capped at
    :data:`~liccodec.ratecontrol.PSNR_CAP`) or MS-SSIM."""
    from liccodec.eval.metrics import MS_SSIM_MIN_SIDE, ms_ssim_rgb, psnr_rgb

    _, rgb, _ = decode_rgb(data)
    if metric == "psnr":
        return min(psnr_rgb(reference_rgb, rgb), PSNR_CAP)
    value = ms_ssim_rgb(reference_rgb, rgb)
    if value is None:
        raise UsageError(f"MS-SSIM needs images at least {MS_SSIM_MIN_SIDE} pixels on each side; "
                         f"use --metric psnr for a folder with smaller images")
    return value


@dataclass
class RDPoints:
    """Real (size, quality) of one image at each grid quality."""

    name: str
    pixels: int
    q_milli: list[int]
    nbytes: list[int]
    quality: list[float]

    def __len__(self) -> int:
        return len(self.q_milli)


def measure(analysis: Analysis, grid: Sequence[int], metric: Metric = "psnr", name: str = "") -> RDPoints:
    """Code and decode one analysed image at every grid quality."""
    sizes, qualities = [], []
    for q in grid:
        data = encode_analysis(analysis, q).data
        sizes.append(len(data))
        qualities.append(score(analysis.planes.rgb, data, metric))
    return RDPoints(name, analysis.pixels, list(grid), sizes, qualities)


# ---- solving the multiple-choice knapsack ----------------------------------------------------

@dataclass
class Choice:
    """One grid index per image, and what it adds up to."""

    method: str
    index: list[int]
    total_bytes: int
    mean_quality: float
    seconds: float = 0.0
    bound: float | None = None        # LP-relaxation upper bound on the mean quality (Lagrangian)
    multiplier: float | None = None   # the Lagrangian's lam, quality per byte

    @classmethod
    def of(cls, method: str, points: Sequence[RDPoints], index: Sequence[int], seconds: float = 0.0,
           **kw: float | None) -> "Choice":
        total = sum(p.nbytes[k] for p, k in zip(points, index))
        mean = sum(p.quality[k] for p, k in zip(points, index)) / max(len(points), 1)
        return cls(method, list(index), total, mean, seconds, **kw)


def min_total(points: Sequence[RDPoints]) -> int:
    """The smallest total any choice can reach."""
    return sum(min(p.nbytes) for p in points)


def _check_feasible(points: Sequence[RDPoints], budget: int) -> None:
    low = min_total(points)
    if low > budget:
        raise TargetNotMet(f"the budget of {budget:,} bytes cannot be met: even the lowest quality of "
                           f"every image gives {low:,} bytes", Probe(0, low))


def solve_exact(points: Sequence[RDPoints], budget: int, time_limit: float = 60.0) -> Choice:
    """The optimum of the 0/1 programme by ``scipy.optimize.milp``."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    _check_feasible(points, budget)
    t0 = time.time()
    sizes = np.concatenate([np.asarray(p.nbytes, dtype=np.float64) for p in points])
    gain = np.concatenate([np.asarray(p.quality, dtype=np.float64) for p in points])
    owner = np.repeat(np.arange(len(points)), [len(p) for p in points])
    one_each = csr_matrix((np.ones(len(owner)), (owner, np.arange(len(owner)))), shape=(len(points), len(owner)))
    res = milp(-gain, integrality=np.ones(len(owner)), bounds=Bounds(0, 1),
               constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(sizes[None, :], -np.inf, budget)],
               options={"mip_rel_gap": 0.0, "time_limit": time_limit})
    if res.x is None:
        raise RuntimeError(f"milp found no solution: {res.message}")
    starts = np.cumsum([0] + [len(p) for p in points])
    index = [int(np.argmax(res.x[a:b])) for a, b in zip(starts[:-1], starts[1:])]
    method = "exact (milp)" if res.status == 0 else f"milp, stopped early ({res.message})"
    choice = Choice.of(method, points, index, time.time() - t0)
    if choice.total_bytes > budget:  # solver tolerance; cannot happen with integral x, but never trust it
        raise RuntimeError("milp returned a choice over the budget")
    return choice


def upper_hull(p: RDPoints) -> list[int]:
    """Indexes of the vertices of the upper convex hull of (bytes, quality), cheapest first.

    Dominated points (more bytes, no more quality) and points under a chord are dropped, so
    along the hull both coordinates increase and the slopes dQ/dR decrease.
    """
    order = sorted(range(len(p)), key=lambda k: (p.nbytes[k], -p.quality[k]))
    front: list[int] = []
    for k in order:
        if front and p.quality[k] <= p.quality[front[-1]]:
            continue
        front.append(k)
    hull: list[int] = []
    for k in front:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is under the chord a-k (or on it): drop it
            cross = ((p.nbytes[b] - p.nbytes[a]) * (p.quality[k] - p.quality[a])
                     - (p.quality[b] - p.quality[a]) * (p.nbytes[k] - p.nbytes[a]))
            if cross >= 0:
                hull.pop()
            else:
                break
        hull.append(k)
    return hull


def solve_lagrangian(points: Sequence[RDPoints], budget: int) -> Choice:
    """The Lagrangian (convex hull) solution, with the LP bound and the final multiplier."""
    _check_feasible(points, budget)
    t0 = time.time()
    hulls = [upper_hull(p) for p in points]
    index = [h[0] for h in hulls]
    total = sum(p.nbytes[k] for p, k in zip(points, index))
    segments = []  # (slope, image, dR, dQ, next vertex)
    for i, (p, h) in enumerate(zip(points, hulls)):
        for a, b in zip(h, h[1:]):
            dr, dq = p.nbytes[b] - p.nbytes[a], p.quality[b] - p.quality[a]
            segments.append((dq / dr, i, dr, dq, b))
    segments.sort(key=lambda s: -s[0])  # stable: one image's segments keep their order
    n = max(len(points), 1)
    value = sum(p.quality[k] for p, k in zip(points, index))
    bound, lam = value, 0.0
    for slope, i, dr, dq, b in segments:
        if total + dr > budget:
            bound = value + dq * (budget - total) / dr
            lam = slope
            break
        total += dr
        value += dq
        index[i] = b
        bound = value
    return Choice.of("Lagrangian", points, index, time.time() - t0, bound=bound / n, multiplier=lam)


def brute_force(points: Sequence[RDPoints], budget: int, limit: int = 1_000_000) -> Choice:
    """Every combination (small cases only: the tests' reference)."""
    _check_feasible(points, budget)
    if math.prod(len(p) for p in points) > limit:
        raise ValueError("too many combinations for brute force")
    best: tuple[float, int] | None = None
    best_index: tuple[int, ...] = ()
    for index in itertools.product(*(range(len(p)) for p in points)):
        total = sum(p.nbytes[k] for p, k in zip(points, index))
        if total > budget:
            continue
        key = (sum(p.quality[k] for p, k in zip(points, index)), -total)
        if best is None or key > best:
            best, best_index = key, index
    return Choice.of("brute force", points, best_index)


def allocate(points: Sequence[RDPoints], budget: int) -> tuple[Choice, Choice]:
    """(the choice to use, the Lagrangian one). The first is exact unless the folder is too
    large for the integer programme, in which case both are the Lagrangian's."""
    lagr = solve_lagrangian(points, budget)
    if sum(len(p) for p in points) > MAX_EXACT_VARIABLES:
        return lagr, lagr
    exact = solve_exact(points, budget)
    if exact.mean_quality + 1e-12 < lagr.mean_quality:  # a solver time-out: keep the better one
        return lagr, lagr
    return exact, lagr


# ---- one fixed quality for the whole folder (the baseline) ------------------------------------

def _interp_size(p: RDPoints, q: int) -> float:
    """Grid interpolation of one image's size at quality ``q`` (log-linear)."""
    return float(np.exp(np.interp(q, p.q_milli, np.log(p.nbytes))))


def fixed_quality_estimate(points: Sequence[RDPoints], budget: int) -> tuple[int, float, float]:
    """The highest single quality whose total fits the budget, from the grid measurements
    alone (sizes log-linear, quality linear between grid points): (q, total, mean quality)."""
    grid = points[0].q_milli
    lo, hi = grid[0], grid[-1]

    def total(q: int) -> float:
        return sum(_interp_size(p, q) for p in points)

    if total(lo) > budget:
        return lo, total(lo), float(np.mean([np.interp(lo, p.q_milli, p.quality) for p in points]))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if total(mid) <= budget else (lo, mid)
    q = hi if total(hi) <= budget else lo
    return q, total(q), float(np.mean([np.interp(q, p.q_milli, p.quality) for p in points]))


@dataclass
class FixedQuality:
    q_milli: int
    total_bytes: int
    mean_quality: float
    encodes: int
    decodes: int
    seconds: float


def fixed_quality(analyses: Sequence[Analysis], points: Sequence[RDPoints], budget: int,
                  metric: Metric = "psnr") -> FixedQuality:
    """The highest single quality (thousandths) whose real files fit the budget together,
    and the real mean quality of its decoded files (the baseline allocation is compared with)."""
    t0 = time.time()
    spec = analyses[0].spec
    lo, hi = quality_bounds(spec)
    files: dict[int, list[bytes]] = {}

    def fits(q: int) -> tuple[bool, float]:
        if q not in files:
            files[q] = [encode_analysis(a, q).data for a in analyses]
        n = sum(len(d) for d in files[q])
        return n <= budget, math.log(n)

    start = fixed_quality_estimate(points, budget)[0]
    br = boundary_search(fits, math.log(budget), lo, hi, start=start,
                         slope=RATE_PER_LOG_LAMBDA * log_lambda_per_milli(spec))
    if br.below is None:
        raise TargetNotMet(f"one quality for all cannot meet {budget:,} bytes", Probe(lo, sum(map(len, files[lo]))))
    q = br.below
    quality = [score(a.planes.rgb, d, metric) for a, d in zip(analyses, files[q])]
    return FixedQuality(q, sum(map(len, files[q])), float(np.mean(quality)), len(files) * len(analyses),
                        len(analyses), time.time() - t0)


# ---- writing the chosen files -----------------------------------------------------------------

@dataclass
class Produced:
    """The file produced for one image."""

    q_milli: int
    nbytes: int
    quality: float
    filled: bool = False      # raised above its grid quality with the budget's slack
    reused: bool = False      # an existing valid output was kept
    encodes: int = 0
    decodes: int = 0


def _next_segment(p: RDPoints, k: int) -> tuple[int, float] | None:
    """(next grid index, quality per byte) when moving up from grid index ``k`` gains something."""
    if k + 1 >= len(p):
        return None
    dr, dq = p.nbytes[k + 1] - p.nbytes[k], p.quality[k + 1] - p.quality[k]
    return (k + 1, dq / dr) if dr > 0 and dq > 0 else None


def realise(points: Sequence[RDPoints], choice: Choice, budget: int, *,
            analysis_of: Callable[[int], Analysis], write: Callable[[int, Encoded], None],
            metric: Metric = "psnr", fill: bool = True,
            existing: Callable[[int], bytes | None] | None = None,
            progress: Callable[[int], None] | None = None) -> list[Produced]:
    """Produce every image's file at its chosen quality without ever exceeding ``budget``.

    ``analysis_of(i)`` analyses image ``i``; ``write(i, enc)`` stores its file. ``existing(i)``,
    when given, returns a previous output, kept when it is valid, at a quality this plan
    allows, and fits (a rerun after an interruption). Images are produced steepest next grid
    segment first, so that the slack (budget minus the planned total) goes where it buys the
    most quality. Returns one :class:`Produced` per image, in the order of ``points``.
    """
    n = len(points)
    planned = [p.nbytes[k] for p, k in zip(points, choice.index)]
    if sum(planned) > budget:
        raise ValueError("the choice is over the budget")
    nexts = [_next_segment(p, k) if fill else None for p, k in zip(points, choice.index)]
    order = sorted(range(n), key=lambda i: -nexts[i][1] if nexts[i] else math.inf)
    committed = sum(planned)   # bytes produced so far + planned bytes of the files still to come
    out: list[Produced | None] = [None] * n
    for i in order:
        allowance = budget - (committed - planned[i])
        prev = existing(i) if existing else None
        made = _reuse(points[i], choice.index[i], nexts[i], prev, allowance, metric, analysis_of, i)
        if made is None:
            made, enc = _produce(points[i], choice.index[i], nexts[i], allowance, metric, analysis_of(i))
            write(i, enc)
        committed += made.nbytes - planned[i]
        out[i] = made
        if progress:
            progress(i)
    if committed > budget:  # unreachable: every file was checked against its allowance
        raise AssertionError("budget exceeded")
    return [o for o in out if o is not None]


def _reuse(p: RDPoints, k: int, nxt: tuple[int, float] | None, prev: bytes | None, allowance: int,
           metric: Metric, analysis_of: Callable[[int], Analysis], i: int) -> Produced | None:
    """A previous output kept as is, or None."""
    if prev is None or len(prev) > allowance:
        return None
    try:
        q = read_header(prev).quality
    except LicError:
        return None
    q_high = p.q_milli[nxt[0]] if nxt else p.q_milli[k]
    if not p.q_milli[k] <= q <= q_high:
        return None
    if q == p.q_milli[k] and len(prev) == p.nbytes[k]:
        return Produced(q, len(prev), p.quality[k], reused=True)
    return Produced(q, len(prev), score(analysis_of(i).planes.rgb, prev, metric), filled=q > p.q_milli[k],
                    reused=True, decodes=1)


def _produce(p: RDPoints, k: int, nxt: tuple[int, float] | None, allowance: int, metric: Metric,
             an: Analysis) -> tuple[Produced, Encoded]:
    """Code one image at grid index ``k``, raised towards ``nxt`` while the allowance permits,
    lowered below ``k`` if (against all measurements) its file would not fit."""
    files: dict[int, Encoded] = {}

    def code(q: int) -> Encoded:
        if q not in files:
            files[q] = encode_analysis(an, q)
        return files[q]

    def fits(q: int) -> tuple[bool, float]:
        nb = len(code(q).data)
        return nb <= allowance, math.log(nb)

    q_low, size_low = p.q_milli[k], p.nbytes[k]
    q = q_low
    if nxt is not None:
        q_high, size_high = p.q_milli[nxt[0]], p.nbytes[nxt[0]]
        log_span = math.log(size_high / size_low)
        if size_high <= allowance and len(code(q_high).data) <= allowance:
            q = q_high
        elif allowance - size_low >= (size_high - size_low) / (q_high - q_low):  # affords a thousandth
            t = math.log(allowance / size_low) / log_span
            br = boundary_search(fits, math.log(allowance), q_low, q_high,
                                 start=q_low + max(1, int(t * (q_high - q_low))),
                                 slope=log_span / (q_high - q_low))
            q = br.below if br.below is not None else q_low
    if len(code(q).data) > allowance:
        lo = quality_bounds(an.spec)[0]
        br = boundary_search(fits, math.log(allowance), lo, q - 1, start=q - 1, slope=1e-3) if q > lo else None
        if br is None or br.below is None:
            raise TargetNotMet(f"{p.name or 'an image'} does not fit what is left of the budget "
                               f"({allowance:,} bytes)", Probe(lo, len(code(lo).data)))
        q = br.below
    enc = code(q)
    if q == q_low and len(enc.data) == size_low:
        quality, decodes = p.quality[k], 0
    elif nxt is not None and q == p.q_milli[nxt[0]] and len(enc.data) == p.nbytes[nxt[0]]:
        quality, decodes = p.quality[nxt[0]], 0
    else:
        quality, decodes = score(an.planes.rgb, enc.data, metric), 1
    return Produced(q, len(enc.data), quality, filled=q > q_low, encodes=len(files), decodes=decodes), enc


# ---- reports ----------------------------------------------------------------------------------

@dataclass
class Report:
    """Everything an allocation did, for ``--report`` and the docs."""

    budget: int
    pixels: int
    metric: str
    grid: list[int]
    exact: Choice
    lagrangian: Choice
    produced: list[Produced]
    points: list[RDPoints]
    fixed_estimate: tuple[int, float, float]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(p.nbytes for p in self.produced)

    @property
    def mean_quality(self) -> float:
        return float(np.mean([p.quality for p in self.produced]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_bytes"], d["mean_quality"] = self.total_bytes, self.mean_quality
        d["bpp"] = 8 * self.total_bytes / self.pixels
        return d

    def summary(self) -> str:
        """One line: bytes used of the budget, mean quality, exact against Lagrangian on the grid,
        and the (interpolated) mean of one fixed quality for the whole folder."""
        f = _formatter(self.metric)
        q_fix, _, fix_mean = self.fixed_estimate
        filled = sum(p.filled for p in self.produced)
        return (f"{self.total_bytes:,} of {self.budget:,} bytes ({8 * self.total_bytes / self.pixels:.4f} bpp), "
                f"mean {self.metric.upper()} {f(self.mean_quality)} ({filled} raised with the slack); "
                f"{len(self.grid)}-quality grid: exact {f(self.exact.mean_quality)}, "
                f"Lagrangian {f(self.lagrangian.mean_quality)}; one quality for all "
                f"(q {q_fix / MILLI:g}) about {f(fix_mean)}")


def _formatter(metric: str) -> Callable[[float], str]:
    return (lambda v: f"{v:.3f} dB") if metric == "psnr" else (lambda v: f"{v:.5f}")


def write_json(path: str | Path, data: dict) -> None:
    import json

    from liccodec.fileio import atomic_write_bytes

    atomic_write_bytes(Path(path), (json.dumps(data, indent=1, default=float) + "\n").encode())


# ---- a folder ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """A folder's budget: an average bpp over all its pixels, or a total size in bytes."""

    avg_bpp: float | None = None
    total_size: int | None = None

    def __post_init__(self) -> None:
        if (self.avg_bpp is None) == (self.total_size is None):
            raise UsageError("give exactly one of --avg-bpp and --total-size")
        if self.avg_bpp is not None and not (math.isfinite(self.avg_bpp) and self.avg_bpp > 0):
            raise UsageError("--avg-bpp must be a positive number")
        if self.total_size is not None and self.total_size < 1:
            raise UsageError("--total-size must be at least one byte")

    def bytes_for(self, pixels: int) -> int:
        from liccodec.ratecontrol import bpp_limit

        return self.total_size if self.total_size is not None else bpp_limit(self.avg_bpp, pixels)

    def __str__(self) -> str:
        return f"{self.avg_bpp:g} bpp on average" if self.avg_bpp is not None else f"{self.total_size:,} bytes in total"


@dataclass
class FolderResult:
    report: Report | None
    failures: list[tuple[Path, str]]
    seconds: float


def _load(src: Path, model: str) -> Analysis:
    from liccodec.codec import analyse
    from liccodec.imageio import open_image, split

    return analyse(split(open_image(src)), model)


def allocate_folder(jobs: Sequence[tuple[Path, Path]], budget: Budget, model: str, *, metric: Metric = "psnr",
                    grid_size: int = DEFAULT_GRID, overwrite: bool = False, progress: bool = True,
                    fill: bool = True) -> FolderResult:
    """Measure every image of ``jobs`` (source, destination), allocate ``budget``, write the files.

    An image that cannot be read or coded is reported in ``failures`` and left out of the
    allocation (the budget of an ``--avg-bpp`` covers the images that are coded). Existing
    outputs that are valid for the plan are kept unless ``overwrite``.
    """
    from tqdm import tqdm

    from liccodec.fileio import atomic_write_bytes
    from liccodec.weights import get_spec

    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    t0 = time.time()
    spec = get_spec(model)
    grid = quality_grid(spec.quality_min, spec.quality_max, grid_size)
    points: list[RDPoints] = []
    kept: list[tuple[Path, Path]] = []
    failures: list[tuple[Path, str]] = []
    for src, dst in tqdm(jobs, desc="measuring", unit="img", disable=not progress, dynamic_ncols=True):
        try:
            points.append(measure(_load(src, model), grid, metric, str(src)))
            kept.append((src, dst))
        except Exception as e:  # noqa: BLE001 - one bad file never stops the batch
            failures.append((src, f"{type(e).__name__}: {e}"))
    t_measure = time.time() - t0
    if not points:
        return FolderResult(None, failures, time.time() - t0)
    pixels = sum(p.pixels for p in points)
    nbytes = budget.bytes_for(pixels)
    exact, lagr = allocate(points, nbytes)

    def existing(i: int) -> bytes | None:
        dst = kept[i][1]
        return dst.read_bytes() if dst.is_file() and not overwrite else None

    t1 = time.time()
    with tqdm(total=len(points), desc="writing", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        produced = realise(points, exact, nbytes, analysis_of=lambda i: _load(kept[i][0], model),
                           write=lambda i, enc: atomic_write_bytes(kept[i][1], enc.data), metric=metric,
                           fill=fill, existing=existing, progress=lambda i: bar.update(1))
    written = sum(kept[i][1].stat().st_size for i in range(len(kept)))
    if written > nbytes:  # the files on disk, not only what was planned
        raise AssertionError(f"wrote {written:,} bytes for a budget of {nbytes:,}")
    report = Report(nbytes, pixels, metric, grid, exact, lagr, produced, points,
                    fixed_quality_estimate(points, nbytes),
                    {"measure": t_measure, "exact": exact.seconds, "lagrangian": lagr.seconds,
                     "write": time.time() - t1})
    return FolderResult(report, failures, time.time() - t0)


# ---- measurement for docs/ratecontrol.md -------------------------------------------------------

def benchmark_allocation(paths: Sequence[Path], model: str, avg_bpps: Sequence[float], *, metric: Metric = "psnr",
                         grid_size: int = DEFAULT_GRID, progress: bool = True) -> dict:
    """Allocation against one fixed quality at the same budget, on the images of ``paths``.

    Files are produced in memory (nothing is written). Per budget: exact and Lagrangian mean
    quality on the grid and their gap, the LP bound, the mean quality of the produced files
    (slack filled), the exact fixed-quality baseline (real encodes and decodes), and timings.
    """
    from tqdm import tqdm

    from liccodec.weights import get_spec

    spec = get_spec(model)
    grid = quality_grid(spec.quality_min, spec.quality_max, grid_size)
    t0 = time.time()
    analyses, points = [], []
    for path in tqdm(paths, desc="measuring", unit="img", disable=not progress):
        analyses.append(_load(Path(path), model))
        points.append(measure(analyses[-1], grid, metric, Path(path).name))
    t_measure = time.time() - t0
    pixels = sum(p.pixels for p in points)
    rows = []
    for bpp in avg_bpps:
        budget = Budget(avg_bpp=bpp).bytes_for(pixels)
        exact, lagr = allocate(points, budget)
        t1 = time.time()
        files: dict[int, bytes] = {}
        produced = realise(points, exact, budget, analysis_of=lambda i: analyses[i],
                           write=lambda i, enc: files.__setitem__(i, enc.data), metric=metric)
        t_realise = time.time() - t1
        fixed = fixed_quality(analyses, points, budget, metric)
        total = sum(len(d) for d in files.values())
        mean = float(np.mean([p.quality for p in produced]))
        rows.append({
            "avg_bpp": bpp, "budget_bytes": budget,
            "allocated_bytes": total, "allocated_bpp": 8 * total / pixels, "allocated_mean": mean,
            "grid_exact_mean": exact.mean_quality, "grid_exact_bytes": exact.total_bytes,
            "grid_lagrangian_mean": lagr.mean_quality, "grid_lagrangian_bytes": lagr.total_bytes,
            "lp_bound": lagr.bound, "exact_minus_lagrangian": exact.mean_quality - lagr.mean_quality,
            "fixed_q": fixed.q_milli / MILLI, "fixed_bytes": fixed.total_bytes,
            "fixed_bpp": 8 * fixed.total_bytes / pixels,
            "fixed_mean": fixed.mean_quality, "gain_over_fixed": mean - fixed.mean_quality,
            "filled_images": sum(p.filled for p in produced),
            "qualities": [p.q_milli / MILLI for p in produced],
            "seconds": {"exact": exact.seconds, "lagrangian": lagr.seconds, "realise": t_realise,
                        "fixed_baseline": fixed.seconds},
            "work": {"realise_encodes": sum(p.encodes for p in produced),
                     "realise_decodes": sum(p.decodes for p in produced),
                     "fixed_encodes": fixed.encodes, "fixed_decodes": fixed.decodes},
        })
    return {"model": model, "metric": metric, "images": len(points), "pixels": pixels,
            "grid": [q / MILLI for q in grid], "measure_seconds": t_measure,
            "measure_work": {"analyses": len(points), "encodes": len(points) * len(grid),
                             "decodes": len(points) * len(grid)},
            "budgets": rows, "points": [asdict(p) for p in points]}


def allocation_markdown(res: dict) -> str:
    """The allocation benchmark as a markdown table."""
    unit = "dB" if res["metric"] == "psnr" else ""
    lines = [f"{res['images']} images, {res['model']}, metric {res['metric']}, grid of {len(res['grid'])} qualities "
             f"({res['grid'][0]:g}..{res['grid'][-1]:g}); measuring the grid took {res['measure_seconds']:.0f} s "
             f"({res['measure_work']['encodes']} encodes + {res['measure_work']['decodes']} decodes).", "",
             "| avg bpp budget | fixed quality: q, bpp, mean | allocated: bpp, mean | gain | grid exact | "
             "grid Lagrangian | exact - Lagrangian | LP bound | solve exact / Lagrangian |",
             "| ---: | :--- | :--- | ---: | ---: | ---: | ---: | ---: | :--- |"]
    for r in res["budgets"]:
        s = r["seconds"]
        lines.append(
            f"| {r['avg_bpp']:g} | {r['fixed_q']:g}, {r['fixed_bpp']:.4f}, {r['fixed_mean']:.3f} | "
            f"{r['allocated_bpp']:.4f}, {r['allocated_mean']:.3f} | **{r['gain_over_fixed']:+.3f} {unit}** | "
            f"{r['grid_exact_mean']:.3f} | {r['grid_lagrangian_mean']:.3f} | {r['exact_minus_lagrangian']:.4f} | "
            f"{r['lp_bound']:.3f} | {1000 * s['exact']:.0f} ms / {1000 * s['lagrangian']:.1f} ms |")
    return "\n".join(lines)
