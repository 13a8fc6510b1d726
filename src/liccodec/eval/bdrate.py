"""Bjontegaard deltas between two rate-distortion curves, with PCHIP interpolation.

BD-rate answers "at equal quality, how many percent more (positive) or fewer (negative) bits
does the test codec spend than the anchor?". For each curve, the natural log of the rate is
interpolated as a function of quality with a piecewise cubic Hermite interpolant (PCHIP, which is
monotone between points and does not overshoot, unlike the original cubic polynomial fit). Both
interpolants are integrated exactly over the quality range the two curves share, and the mean
gap ``d`` becomes ``100 * (exp(d) - 1)`` percent. BD-PSNR swaps the axes: quality as a function
of log-rate, averaged over the shared log-rate range, in the quality's own unit (dB).

Input points are cleaned the same way for both curves before interpolating:

* points with a non-finite or non-positive rate, or a non-finite quality, are dropped
  (a lossless point has infinite PSNR);
* points are sorted by the interpolation's x value (quality for BD-rate, rate for BD-PSNR),
  whatever order the settings were run in;
* points sharing the same x are merged into one whose y is their mean (for BD-rate, the mean
  log-rate, i.e. the geometric mean of the rates);
* y need not be monotonic: a point that costs more bits for lower quality is kept, and PCHIP
  passes through it flat rather than oscillating.

At least two distinct points per curve are needed. When the curves' ranges do not overlap (or
touch in a single value), the delta is undefined and the functions return ``None``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _clean(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by x, duplicates of x merged by averaging their y."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {xa.shape} and {ya.shape}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    ux, inverse = np.unique(xa, return_inverse=True)  # sorted
    uy = np.bincount(inverse, weights=ya, minlength=len(ux)) / np.bincount(inverse, minlength=len(ux))
    return ux, uy


def _log_rates(rate: Sequence[float]) -> np.ndarray:
    r = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, np.log(np.where(r > 0, r, 1.0)), np.nan)


def _mean_gap(x_a: np.ndarray, y_a: np.ndarray, x_t: np.ndarray, y_t: np.ndarray) -> float | None:
    """Mean of (test - anchor) over the shared x range of two PCHIP interpolants."""
    from scipy.interpolate import PchipInterpolator

    if len(x_a) < 2 or len(x_t) < 2:
        return None
    lo, hi = max(x_a[0], x_t[0]), min(x_a[-1], x_t[-1])
    if not hi > lo:
        return None
    int_a = PchipInterpolator(x_a, y_a, extrapolate=False).integrate(lo, hi)
    int_t = PchipInterpolator(x_t, y_t, extrapolate=False).integrate(lo, hi)
    return float((int_t - int_a) / (hi - lo))


def bd_rate(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
            rate_test: Sequence[float], quality_test: Sequence[float]) -> float | None:
    """Bjontegaard delta rate of the test curve against the anchor, in percent.

    ``rate`` is any positive rate measure (bpp, bytes: the unit cancels); ``quality`` is a
    "higher is better" score in a roughly log-linear relation to rate (PSNR in dB, MS-SSIM in
    dB). Negative means the test codec needs fewer bits for the same quality. ``None`` when the
    curves share no quality range.
    """
    x_a, y_a = _clean(quality_anchor, _log_rates(rate_anchor))
    x_t, y_t = _clean(quality_test, _log_rates(rate_test))
    gap = _mean_gap(x_a, y_a, x_t, y_t)
    return None if gap is None else 100.0 * math.expm1(gap)


def bd_quality(rate_anchor: Sequence[float], quality_anchor: Sequence[float],
               rate_test: Sequence[float], quality_test: Sequence[float]) -> float | None:
    """Bjontegaard delta quality (BD-PSNR when quality is PSNR): test minus anchor, averaged
    over the shared log-rate range, in the quality's unit. ``None`` when no rate range is shared."""
    x_a, y_a = _clean(_log_rates(rate_anchor), quality_anchor)
    x_t, y_t = _clean(_log_rates(rate_test), quality_test)
    return _mean_gap(x_a, y_a, x_t, y_t)


bd_psnr = bd_quality
