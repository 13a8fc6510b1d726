"""Rate control for one image: the best file that meets a size, bpp or PSNR target.

Quality acts only after the analysis transform (the gain units scale ``y = g_a(x)``, see
``latent.hyperprior``), so the expensive, quality-independent half of encoding runs once per
image (:func:`liccodec.codec.analyse`) and every quality tried afterwards is a *real*,
complete encode that costs only the hyper-networks and the entropy coder
(:func:`liccodec.codec.encode_analysis`). Sizes are never estimated: the size of a candidate
is the size of the exact file that would be written, header, checksum and alpha included.

Search (:func:`boundary_search`). Along the integer quality axis (thousandths) file size and
PSNR both grow with quality. The search brackets the quality where a monotone test flips
("the file fits", "the PSNR is still short"): one probe at the default quality, steps sized by
a prior slope until the test flips, then false position with the Illinois modification inside
the bracket, falling back to bisection whenever the bracket fails to halve. Sizes are
interpolated in log space (log size is close to linear in quality), PSNR in dB.

* size / bpp: the *largest* quality whose file fits. The bracket is closed to one thousandth,
  so a target equal to an achievable size is met exactly, and a file over the target is
  never returned.
* PSNR: the *smallest* file whose decoded 8-bit RGB reaches the target. Each probe is an
  encode plus a decode; the search stops once the two files bracketing the answer differ by
  at most ``size_tolerance`` (0.5 %) of the larger (or 8 bytes), as no quality between them
  could save more.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Literal

from liccodec.codec import DEFAULT_MODEL, Analysis, Encoded, analyse, decode_rgb, encode_analysis
from liccodec.errors import TargetError, UsageError
from liccodec.imageio import Planes
from liccodec.weights import WeightSpec

MILLI = 1000  # qualities travel as integers in thousandths

#: Prior slopes of an MSE-trained gained model, per unit of ln(lambda) along the quality
#: axis: d ln(bytes) and d PSNR (dB). They only size the first step of a search (a wrong
#: prior costs a probe or two, never a wrong answer).
RATE_PER_LOG_LAMBDA = 0.6
PSNR_PER_LOG_LAMBDA = 2.5
#: An identical reconstruction has infinite PSNR; searches and averages use this instead.
PSNR_CAP = 100.0
#: One-sided steps aim this much past the predicted crossing, so that they usually bracket it.
OVERSHOOT = 1.2
#: A PSNR search stops once a smaller file could save at most this many bytes (two rANS words,
#: the granularity of a stream's size) or ``size_tolerance`` of the file, whichever is larger.
MIN_SAVING = 8

_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str | int) -> int:
    """A byte count from ``"50000"``, ``"50k"``, ``"1.5M"``, ``"2G"`` (powers of 1000) or ``"64KiB"``
    (powers of 1024). Fractions of a byte are dropped."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise UsageError(f"cannot read the size {text!r}: give bytes, optionally with a k, M or G "
                         "suffix (powers of 1000), e.g. 50k or 1.5M")
    n = math.floor(Fraction(m.group(1)) * _SIZE_UNITS[unit])
    if n < 1:
        raise UsageError(f"size {text!r} is less than one byte")
    return n


def bpp_limit(bpp: float, pixels: int) -> int:
    """The most bytes a file of ``pixels`` may have to stay at or under ``bpp``.

    The float is read as the decimal the user typed (``0.3`` is 3/10, not its binary
    neighbour), so the limit is exact: ``8 * limit / pixels <= bpp`` always holds.
    """
    return math.floor(Fraction(repr(float(bpp))) * pixels / 8)


TargetKind = Literal["size", "bpp", "psnr"]


@dataclass(frozen=True)
class Target:
    """At most ``value`` bytes (``size``) or bits per pixel (``bpp``), or at least ``value`` dB PSNR."""

    kind: TargetKind
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("size", "bpp", "psnr"):
            raise UsageError(f"unknown target kind {self.kind!r}")
        if not (math.isfinite(self.value) and self.value > 0):
            raise UsageError(f"a {self.kind} target must be a positive number, not {self.value!r}")

    @property
    def is_rate(self) -> bool:
        return self.kind != "psnr"

    def byte_limit(self, pixels: int) -> int:
        """Largest file (bytes) that meets a size or bpp target for an image of ``pixels``."""
        if self.kind == "size":
            return int(self.value)
        if self.kind == "bpp":
            return bpp_limit(self.value, pixels)
        raise ValueError("a PSNR target has no byte limit")

    def __str__(self) -> str:
        if self.kind == "size":
            return f"{int(self.value):,} bytes"
        if self.kind == "bpp":
            return f"{self.value:g} bpp"
        return f"PSNR {self.value:g} dB"


@dataclass
class Probe:
    """One quality tried: the size of its complete file and, when decoded, its PSNR."""

    q_milli: int
    nbytes: int
    psnr: float | None = None


class TargetNotMet(TargetError):
    """A target no quality of the model meets; ``closest`` is the nearest file there is."""

    def __init__(self, message: str, closest: Probe):
        super().__init__(message)
        self.closest = closest


@dataclass
class TargetResult:
    """The file chosen for a target, with what the search cost."""

    encoded: Encoded
    target: Target
    psnr: float | None          # of the decoded file, when the search measured it
    encodes: int                # complete files coded (each a real encode of this image)
    decodes: int                # files decoded to measure PSNR
    seconds: float
    probes: list[Probe] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return self.encoded.data

    @property
    def q_milli(self) -> int:
        return self.encoded.header.quality

    def note(self, with_psnr: bool = True) -> str:
        """The summary line's tail: chosen quality, target and the work it took."""
        psnr = f", PSNR {self.psnr:.2f} dB" if self.psnr is not None and with_psnr else ""
        work = f"{self.encodes} encodes" + (f" + {self.decodes} decodes" if self.decodes else "")
        return f", q {self.q_milli / MILLI:g}{psnr} (target {self.target}: 1 analysis + {work})"


def existing_meets(target: Target, width: int, height: int, nbytes: int) -> bool:
    """Whether an existing file of ``nbytes`` for a ``width`` x ``height`` image can be kept for
    ``target`` without decoding it: size and bpp targets only (a PSNR target is searched again)."""
    return target.is_rate and nbytes <= target.byte_limit(width * height)


# ---- the search ------------------------------------------------------------------------------

@dataclass
class Bracket:
    """Where a monotone test flips: ``below`` holds, ``above`` fails (None: never seen)."""

    below: int | None
    above: int | None
    probes: int


def boundary_search(test: Callable[[int], tuple[bool, float]], goal: float, lo: int, hi: int, *,
                    start: int, slope: float, close_enough: Callable[[int, int], bool] | None = None,
                    max_probes: int = 64) -> Bracket:
    """Bracket the point of ``[lo, hi]`` where ``test`` stops holding, in few calls.

    ``test(q)`` returns ``(holds, value)``: ``value`` grows with ``q`` and ``holds`` is "value
    is still below ``goal``", true at the low end. ``slope`` (value per unit of ``q``, > 0) sizes
    the first step. The search ends when the bracket is one unit wide, when ``close_enough``
    says it is narrow enough, or at a domain end where the test never flips. Every probe lies
    strictly inside the current bracket, so the answer is consistent even where ``value`` is
    not quite monotone: ``below`` held and ``above`` failed, as measured.
    """
    if lo > hi:
        raise ValueError("empty search range")
    values: dict[int, float] = {}
    below: int | None = None
    above: int | None = None
    w_below = w_above = 0.0          # Illinois-weighted residuals (value - goal) of the two ends
    last_side = ""
    widths: list[int] = []
    step = 0                          # the last one-sided step; the next is at least twice as long
    q = min(max(start, lo), hi)
    for n in range(1, max_probes + 1):
        holds, v = test(q)
        values[q] = v
        side = "below" if holds else "above"
        if holds:
            below, w_below = q, v - goal
            if last_side == side:
                w_above *= 0.5
        else:
            above, w_above = q, v - goal
            if last_side == side:
                w_below *= 0.5
        last_side = side
        if below is not None and above is not None:
            widths.append(above - below)
            if above - below <= 1 or (close_enough is not None and close_enough(below, above)):
                return Bracket(below, above, n)
            if len(widths) >= 3 and widths[-1] > widths[-3] // 2:
                q = (below + above) // 2        # false position is stalling: bisect
                continue
            denom = w_above - w_below
            t = -w_below / denom if denom > 0 and math.isfinite(denom) else 0.5
            q = below + round(t * (above - below))
            q = min(max(q, below + 1), above - 1)
        elif below is not None:
            if below >= hi:
                return Bracket(below, None, n)
            step = _one_sided_step(goal - values[below], values, slope, step)
            q = min(hi, below + step)
        else:
            assert above is not None
            if above <= lo:
                return Bracket(None, above, n)
            step = _one_sided_step(values[above] - goal, values, slope, step)
            q = max(lo, above - step)
    return Bracket(below, above, max_probes)


def _one_sided_step(distance: float, values: dict[int, float], prior: float, last: int) -> int:
    """How far to step towards the goal before it has been crossed.

    Aims a little past the crossing that the secant through the two latest probes (or, with
    one probe or a useless secant, the prior slope) predicts, and at least doubles the last
    such step, so that a bad prior or a flat stretch costs a logarithmic number of probes.
    """
    s = prior
    if len(values) >= 2:
        (q0, v0), (q1, v1) = list(values.items())[-2:]
        secant = (v1 - v0) / (q1 - q0)
        if math.isfinite(secant) and secant > 0:
            s = secant
    predicted = distance / s * OVERSHOOT
    predicted = math.ceil(predicted) if math.isfinite(predicted) else 1 << 30
    return max(1, predicted, 2 * last)


# ---- one image -------------------------------------------------------------------------------

class Candidates:
    """The files of one analysed image at the qualities tried so far; each coded, and
    decoded, at most once."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        self.files: dict[int, Encoded] = {}
        self.psnrs: dict[int, float] = {}
        self.decodes = 0

    @property
    def encodes(self) -> int:
        return len(self.files)

    def file(self, q_milli: int) -> Encoded:
        if q_milli not in self.files:
            self.files[q_milli] = encode_analysis(self.analysis, q_milli)
        return self.files[q_milli]

    def size(self, q_milli: int) -> int:
        return len(self.file(q_milli).data)

    def psnr(self, q_milli: int) -> float:
        """PSNR-RGB of the decoded file (what ``lic decode`` returns), capped at :data:`PSNR_CAP`."""
        if q_milli not in self.psnrs:
            from liccodec.eval.metrics import psnr_rgb

            _, rgb, _ = decode_rgb(self.file(q_milli).data)
            self.decodes += 1
            self.psnrs[q_milli] = min(psnr_rgb(self.analysis.planes.rgb, rgb), PSNR_CAP)
        return self.psnrs[q_milli]

    def probes(self) -> list[Probe]:
        return [Probe(q, len(e.data), self.psnrs.get(q)) for q, e in sorted(self.files.items())]


def quality_bounds(spec: WeightSpec) -> tuple[int, int]:
    """The model's trained quality range in thousandths."""
    return round(spec.quality_min * MILLI), round(spec.quality_max * MILLI)


def search_bounds(spec: WeightSpec) -> tuple[int, int]:
    """The qualities a one-image target searches, in thousandths: the whole range, from the
    extrapolated qualities below the lowest level to the residual layer's above the top
    (``codec.quality_bottom``, ``codec.quality_top``); file size and PSNR grow with quality
    across both joins (docs/residual.md). Folder allocation stays on the trained levels."""
    from liccodec.codec import quality_bottom, quality_top

    return round(quality_bottom(spec) * MILLI), round(quality_top(spec) * MILLI)


def log_lambda_per_milli(spec: WeightSpec) -> float:
    """Mean d ln(lambda) per thousandth of quality along the model's trained ladder."""
    lambdas = spec.config.get("lambdas") if isinstance(spec.config, dict) else None
    lo, hi = quality_bounds(spec)
    if lambdas and len(lambdas) > 1 and hi > lo and min(lambdas) > 0:
        return math.log(max(lambdas) / min(lambdas)) / (hi - lo)
    return 0.66 / MILLI  # msh.mse's ladder


def encode_to_target(source: Planes | Analysis, target: Target, model: str = DEFAULT_MODEL, *,
                     size_tolerance: float = 0.005) -> TargetResult:
    """The best file of ``source`` that meets ``target`` (see the module docstring).

    Raises :class:`TargetNotMet` (a :class:`~liccodec.errors.TargetError`, exit code 8) with
    the closest achievable file when no quality meets the target.
    """
    t0 = time.time()
    an = source if isinstance(source, Analysis) else analyse(source, model)
    spec = an.spec
    lo, hi = search_bounds(spec)
    start = min(max(round(spec.quality_default * MILLI), lo), hi)
    per_milli = log_lambda_per_milli(spec)
    cands = Candidates(an)
    if target.is_rate:
        limit = target.byte_limit(an.pixels)
        if limit < 1:
            raise UsageError(f"a target of {target} is less than one byte for this image")

        def fits(q: int) -> tuple[bool, float]:
            n = cands.size(q)
            return n <= limit, math.log(n)

        br = boundary_search(fits, math.log(limit), lo, hi, start=start, slope=RATE_PER_LOG_LAMBDA * per_milli)
        if br.below is None:
            n = cands.size(lo)
            raise TargetNotMet(
                f"target {target} cannot be met: even the lowest quality ({lo / MILLI:g}) gives "
                f"{n:,} bytes ({8 * n / an.pixels:.4f} bpp); the smallest achievable file is {n:,} bytes",
                Probe(lo, n))
        chosen = br.below
    else:
        goal = target.value

        def short(q: int) -> tuple[bool, float]:
            p = cands.psnr(q)
            return p < goal, p

        def close(a: int, b: int) -> bool:
            return cands.size(b) - cands.size(a) <= max(size_tolerance * cands.size(b), MIN_SAVING)

        br = boundary_search(short, goal, lo, hi, start=start, slope=PSNR_PER_LOG_LAMBDA * per_milli,
                             close_enough=close)
        if br.above is None:
            p, n = cands.psnr(hi), cands.size(hi)
            raise TargetNotMet(
                f"target {target} cannot be met: even the highest quality ({hi / MILLI:g}) reaches "
                f"only {p:.2f} dB ({n:,} bytes)", Probe(hi, n, p))
        chosen = br.above
    return TargetResult(cands.file(chosen), target, cands.psnrs.get(chosen), cands.encodes, cands.decodes,
                        time.time() - t0, cands.probes())


# ---- measurement for docs/ratecontrol.md -------------------------------------------------------

def benchmark_targets(paths: list, model: str = DEFAULT_MODEL, *, bpps: tuple[float, ...] = (0.25, 0.5, 1.0),
                      sizes: tuple[int, ...] = (20_000, 50_000),
                      psnr_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)) -> dict:
    """Target accuracy on the images of ``paths``: what each search achieved and what it cost.

    Per image: the bpp and size targets given; the exact limits (a target equal to the
    smallest file, met exactly, and one byte less, not met); PSNR targets at the given
    fractions of the way between the image's PSNR at the lowest and the highest quality
    (measured separately, so they suit any model) plus one 0.5 dB above the highest (not met).
    The file of the first search on each image is compared with a plain encode at its quality.
    """
    from pathlib import Path

    from liccodec.codec import encode_planes
    from liccodec.imageio import open_image, split

    rows = []
    for path in paths:
        planes = split(open_image(Path(path)))
        t0 = time.time()
        an = analyse(planes, model)
        t_analyse = time.time() - t0
        lo, hi = quality_bounds(an.spec)
        ends = Candidates(an)
        smallest, p_lo, p_hi = ends.size(lo), ends.psnr(lo), ends.psnr(hi)
        targets = [Target("bpp", b) for b in bpps] + [Target("size", s) for s in sizes]
        targets += [Target("size", smallest), Target("size", smallest - 1)]
        targets += [Target("psnr", round(p_lo + f * (p_hi - p_lo), 2)) for f in psnr_fractions]
        targets += [Target("psnr", round(p_hi + 0.5, 2))]
        for i, target in enumerate(targets):
            row: dict = {"image": Path(path).name, "kind": target.kind, "target": target.value,
                         "analyse_seconds": t_analyse}
            try:
                r = encode_to_target(an, target)
                n = len(r.data)
                # a target outside the model's range is met at an end of it: no search to judge
                at_end = r.q_milli == (hi if target.is_rate else lo)
                row.update(met=True, q=r.q_milli / MILLI, bytes=n, bpp=8 * n / an.pixels, psnr=r.psnr,
                           encodes=r.encodes, decodes=r.decodes, seconds=r.seconds, at_range_end=at_end)
                if i == 0:
                    row["same_as_plain_encode"] = encode_planes(planes, model, r.q_milli / MILLI).data == r.data
            except TargetNotMet as e:
                c = e.closest
                row.update(met=False, q=c.q_milli / MILLI, bytes=c.nbytes, bpp=8 * c.nbytes / an.pixels, psnr=c.psnr,
                           message=str(e))
            rows.append(row)
    return {"model": model, "rows": rows}


def targets_markdown(res: dict) -> str:
    """The target benchmark as a markdown table plus a per-kind summary."""
    lines = ["| image | target | met | achieved | q | encodes + decodes | time (s) |",
             "| :--- | :--- | :---: | :--- | ---: | ---: | ---: |"]
    for r in res["rows"]:
        target = {"size": f"{int(r['target']):,} B", "bpp": f"{r['target']:g} bpp",
                  "psnr": f"{r['target']:g} dB"}[r["kind"]]
        got = f"{r['bytes']:,} B ({r['bpp']:.4f} bpp)" + (f", {r['psnr']:.2f} dB" if r.get("psnr") else "")
        work = f"{r['encodes']} + {r['decodes']}" if r["met"] else "-"
        secs = f"{r['seconds']:.1f}" if r["met"] else "-"
        met = ("yes (range end)" if r.get("at_range_end") else "yes") if r["met"] else "no"
        lines.append(f"| {r['image']} | {target} | {met} | {got} | {r['q']:g} | {work} | {secs} |")
    lines += ["", "Accuracy over the searches that ended inside the quality range (a target beyond an end "
              "of the range is met at that end, or not at all):", "",
              "| kind | met inside / at an end / not met | achieved / target: mean (min, max) | "
              "encodes: mean, max | decodes: mean, max |",
              "| :--- | :--- | :--- | :--- | :--- |"]
    for kind in ("bpp", "size", "psnr"):
        rows = [r for r in res["rows"] if r["kind"] == kind]
        met = [r for r in rows if r["met"] and not r.get("at_range_end")]
        if not met:
            continue
        at_end = sum(bool(r["met"] and r.get("at_range_end")) for r in rows)
        if kind == "psnr":
            diff = [r["psnr"] - r["target"] for r in met]
            acc = f"{sum(diff) / len(diff):+.3f} dB ({min(diff):+.3f}, {max(diff):+.3f})"
        else:
            ratio = [(r["bytes"] if kind == "size" else r["bpp"]) / r["target"] for r in met]
            acc = f"{100 * sum(ratio) / len(ratio):.3f} % ({100 * min(ratio):.3f}, {100 * max(ratio):.3f})"
        enc = [r["encodes"] for r in met]
        dec = [r["decodes"] for r in met]
        lines.append(f"| {kind} | {len(met)} / {at_end} / {len(rows) - len(met) - at_end} | {acc} | "
                     f"{sum(enc) / len(enc):.1f}, {max(enc)} | {sum(dec) / len(dec):.1f}, {max(dec)} |")
    return "\n".join(lines)
