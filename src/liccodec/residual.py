"""The residual layer: qualities above a model's ``residual_from`` (format 5.x, stream ``residual``).

A learned model's curve ends at its top lambda level (charm.mse: 35.5 dB on Kodak), and
raising the top needs wider transforms trained far longer than this project's CPU allows
(docs/training-history.md, "The top of the range"). The residual layer goes above it the
way lossy-plus-residual coders do (Bai et al., "Learning scalable l-infinity-constrained
near-lossless image compression via joint lossy image and residual compression", CVPR 2021):
the file codes the image with the model at a quality ``B`` (``codec.base_milli``: the
model's ``residual_from``, which is its top level unless its manifest names a lower one),
then the difference between the image and what that decodes to, with a plain transform
coder. charm.mse's layer builds on quality 7, one level below its top: its level 8 buys
less per bit than the layer does (docs/residual.md).

1. ``r = x - x_hat`` per pixel, in 8-bit units, turned by the orthonormal colour transform
   of :func:`_to_colour` (luma-like first), so the squared error is the same in both spaces;
2. ``LEVELS`` levels of the CDF 9/7 wavelet (the JPEG 2000 irreversible filter, lifting as in
   ``liccodec.nn.wavelet``, here in numpy: the decoder does not import torch), after
   padding to a multiple of ``2**LEVELS`` by whole-sample symmetry;
3. every coefficient quantised with one step (in the encoder, dead-zone rounding and then
   a rate-distortion pass that moves a value one step towards zero where the bits saved are
   worth more than the error added; in the decoder, ``sign(q) * (|q| - bias) * step``);
4. the integers coded with rANS (``liccodec.entropy``), each with one of ``TABLES`` fixed
   tables (two-sided geometric laws with a boosted zero). Its table is chosen per (band,
   channel, context) by the encoder, which writes the choices in the stream; the context is the coefficient's
   checkerboard phase in its band, the activity of its decoded neighbours (phase 1: the four
   phase-0 neighbours; phase 0: the parent coefficient one level coarser and the sibling bands
   of its level decoded before it) and the magnitude of the earlier channels at the same place.

Everything that selects a table is integer arithmetic on decoded integers, and the tables
are built from basic IEEE operations only (no exp or log), so the symbols decode
identically on every machine. The pixels are ``round(x_hat + inverse(r_hat))``: like the
base layer's, they may differ between machines by one code value where a float sum lands
on a rounding boundary.

Stream layout (docs/format.md, "Residual layer"; ``codec`` writes the varint ``B`` before
it in a 5.x file): ``u8 levels``, ``varint step`` (in 1/64
of a code value), ``u8 bias`` (in 1/256 of a step), ``varint`` length of the zlib-deflated
table choices, those bytes, ``varint`` length of the rANS words, the words, then the
escapes (zigzag varints) to the end.
"""
from __future__ import annotations

import math
import zlib
from functools import lru_cache

import numpy as np

from liccodec.container.varint import decode as read_varint, encode as write_varint
from liccodec.entropy import StreamReader, StreamWriter, TableSet
from liccodec.errors import FormatError

#: A model's qualities reach its top level plus this: ``top + EXTRA`` is the finest step.
EXTRA = 4.0
LEVELS = 3
SCALES = 32             # table scales, 1.3225 apart
BOOSTS = 8              # zero boosts 1, 2, 4, ..., 128
TABLES = SCALES * BOOSTS  # 256: a table choice is one byte
CONTEXTS = 48           # 2 phases x 8 activity classes x 3 cross-channel classes
STEP_UNIT = 64          # the stream's step is in 1/64 of a code value
MAX_LEVELS = 5
DEAD_ZONE = 0.05        # encoder only: |c| / step below 0.5 + DEAD_ZONE rounds to zero, before RDO
BIAS = 0                # reconstruction offset towards zero, in 1/256 of a step
RDO = 0.15              # encoder only: weight of the bits against the squared error in steps (0: off)

_S3, _S2, _S6 = np.float32(math.sqrt(3)), np.float32(math.sqrt(2)), np.float32(math.sqrt(6))  # IEEE: exact rounding
# CDF 9/7 lifting steps and gain (liccodec.nn.wavelet holds the same numbers for torch)
_LIFT = ((True, -1.586134342), (False, -0.05298011854), (True, 0.8829110762), (False, 0.4435068522))
_K97 = 1.149604398
_ACTIVITY = np.array([1, 2, 4, 8, 16, 32, 64])  # class k: 2^(k-1) <= activity < 2^k, 7 from 64 up


def step_for(quality_milli: int, from_milli: int) -> int:
    """The step (in 1/64 of a code value) of a quality above ``from_milli``, the quality the
    latents are coded at (``codec.residual_from``): 64 code values just above it, halved
    with every quality (charm.mse, from 7: 32 at quality 8, 2 at 12). Encoder only."""
    over = (quality_milli - from_milli) / 1000
    return max(1, int(round(64 * STEP_UNIT * 2.0 ** -over)))


# ---- tables ----------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def tables() -> TableSet:
    """The fixed tables: for each of ``BOOSTS`` zero boosts and ``SCALES`` scales (table
    ``boost_index * SCALES + scale_index``), the two-sided geometric ``p(v) ~ t^|v|``,
    ``t = b / (1 + b)``, with ``b`` from 0.02 up by a factor 1.3225 per scale, over
    ``|v| <= ceil(16 b) + 1``, with the weight of 0 multiplied by the boost (a power of two)
    and an escape weighing the mass beyond. Residual coefficients are more peaked at zero than
    a geometric law; the boosts saved 3.6 points of BD-rate on Kodak (docs/residual.md).
    Built from multiplications and divisions only (``cumprod`` is a sequential loop), which
    IEEE arithmetic rounds the same way on every machine; constriction normalises."""
    b = np.cumprod(np.concatenate([[0.02], np.full(SCALES - 1, 1.3225)]))
    half = (np.ceil(16.0 * b) + 1).astype(np.int64)
    width = 2 * int(half.max()) + 2
    pmf = np.zeros((BOOSTS * SCALES, width))
    for k in range(SCALES):
        t = b[k] / (1.0 + b[k])
        h = int(half[k])
        powers = np.cumprod(np.concatenate([[1.0], np.full(h + 1, t)]))  # t^0 .. t^(h+1)
        row = np.zeros(width)
        row[: 2 * h + 1] = np.concatenate([powers[h:0:-1], powers[: h + 1]])
        row[2 * h + 1] = 2.0 * powers[h + 1] / (1.0 - t)
        for i in range(BOOSTS):
            pmf[i * SCALES + k] = row
            pmf[i * SCALES + k, h] = float(1 << i)
    return TableSet(pmf, np.tile(2 * half + 1, BOOSTS), np.tile(-half, BOOSTS))


@lru_cache(maxsize=1)
def _costs() -> np.ndarray:
    """(TABLES, V) bits of coding |v| = 0..V-1 (either sign) with each table; escapes cost the
    escape category plus two bytes. Encoder only."""
    t = tables()
    width = int(t.lengths.max()) // 2 + 2
    out = np.empty((TABLES, width))
    for k in range(TABLES):
        p = t.pmf[k, : t.lengths[k] + 1] / t.pmf[k, : t.lengths[k] + 1].sum()
        h = int(t.lengths[k]) // 2
        inside = -np.log2(p[h: 2 * h + 1])
        esc = -np.log2(p[2 * h + 1]) + 16
        out[k] = np.concatenate([inside, np.full(width - h - 1, esc)])[:width]
    return out


# ---- colour and wavelet ----------------------------------------------------------------------

def _to_colour(r: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB differences -> (3, H, W) orthonormal components, float32."""
    r = r.astype(np.float32)
    R, G, B = r[..., 0], r[..., 1], r[..., 2]
    return np.stack([(R + G + B) / _S3, (R - B) / _S2, (R - 2 * G + B) / _S6])


def _from_colour(c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_colour`: (3, H, W) -> (H, W, 3)."""
    a, u, v = c[0] / _S3, c[1] / _S2, c[2] / _S6
    return np.stack([a + u + v, a - 2 * v, a - u + v], axis=-1)


def _pair(t: np.ndarray, ahead: bool) -> np.ndarray:
    """``t[n] + t[n+1]`` (ahead) or ``t[n-1] + t[n]`` along the last axis, symmetric ends."""
    if ahead:
        return t + np.concatenate([t[..., 1:], t[..., -1:]], axis=-1)
    return t + np.concatenate([t[..., :1], t[..., :-1]], axis=-1)


def _analysis_last(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, d = x[..., 0::2], x[..., 1::2]
    for predict, coef in _LIFT:
        if predict:
            d = d + np.float32(coef) * _pair(s, True)
        else:
            s = s + np.float32(coef) * _pair(d, False)
    return s * np.float32(_K97), d / np.float32(_K97)


def _synthesis_last(s: np.ndarray, d: np.ndarray) -> np.ndarray:
    s, d = s / np.float32(_K97), d * np.float32(_K97)
    for predict, coef in reversed(_LIFT):
        if predict:
            d = d - np.float32(coef) * _pair(s, True)
        else:
            s = s - np.float32(coef) * _pair(d, False)
    return np.stack([s, d], axis=-1).reshape(s.shape[:-1] + (2 * s.shape[-1],))


def wavedec(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """(C, H, W), H and W multiples of 2**levels -> bands in decoding order: the coarsest LL,
    then LH, HL, HH of each level from the coarsest (bands named as in liccodec.nn.wavelet)."""
    highs = []
    for _ in range(levels):
        lo, hi = _analysis_last(x)                       # along the width
        ll, lh = (np.swapaxes(b, -1, -2) for b in _analysis_last(np.swapaxes(lo, -1, -2)))
        hl, hh = (np.swapaxes(b, -1, -2) for b in _analysis_last(np.swapaxes(hi, -1, -2)))
        highs.append([lh, hl, hh])
        x = ll
    return [x] + [b for level in reversed(highs) for b in level]


def waverec(bands: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`wavedec`."""
    x, rest = bands[0], bands[1:]
    for i in range(0, len(rest), 3):
        lh, hl, hh = rest[i: i + 3]
        lo = np.swapaxes(_synthesis_last(np.swapaxes(x, -1, -2), np.swapaxes(lh, -1, -2)), -1, -2)
        hi = np.swapaxes(_synthesis_last(np.swapaxes(hl, -1, -2), np.swapaxes(hh, -1, -2)), -1, -2)
        x = _synthesis_last(lo, hi)
    return x


def _padded(h: int, w: int, levels: int) -> tuple[int, int]:
    m = 1 << levels
    return -(-h // m) * m, -(-w // m) * m


def _band_shapes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    hp, wp = _padded(h, w, levels)
    shapes = [(hp >> levels, wp >> levels)]
    for lv in range(levels, 0, -1):
        shapes += [(hp >> lv, wp >> lv)] * 3
    return shapes


# ---- contexts --------------------------------------------------------------------------------

def _phase(shape: tuple[int, int]) -> np.ndarray:
    return (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 2).astype(bool)


def _neighbours(a: np.ndarray) -> np.ndarray:
    """Sum of the four neighbours of every position (zero outside the band)."""
    p = np.pad(a, 1)
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def _contexts(phase1: bool, mag: np.ndarray, mags: list[np.ndarray], band: int, c: int) -> np.ndarray:
    """Context (0..CONTEXTS-1) of channel ``c``'s coefficients of one phase of band ``band``,
    from ``mag`` (3, h, w), the magnitudes decoded so far in this band (zero where not yet),
    and ``mags``, those of the bands before it (:func:`_phase0_activity`, for phase 0)."""
    if phase1:
        activity = _neighbours(mag[c])
    else:
        around = _phase0_activity(mags, band, c, mag.shape[1:])
        activity = 4 * around if around is not None else np.zeros(mag.shape[1:], np.int32)
    ka = np.searchsorted(_ACTIVITY, activity, side="right")
    kb = np.minimum(mag[:c].sum(0), 2) if c else np.zeros_like(ka)
    return int(phase1) * 24 + ka * 3 + kb


def _phase0_activity(bands_mag: list[np.ndarray], band: int, c: int, shape: tuple[int, int]) -> np.ndarray | None:
    """What phase 0 of a band knows around each position: the magnitude of the same
    orientation one level coarser (repeated 2x2), plus those of the bands of its own level
    decoded before it (LH before HL before HH) at the same place; None for the LL band.
    The siblings saved 0.6% over the parent alone on Kodak (docs/residual.md)."""
    if band == 0:
        return None
    out = np.zeros(shape, np.int32)
    if band >= 4:
        p = bands_mag[band - 3][c]
        out += np.repeat(np.repeat(p, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]
    for sibling in range(1 + 3 * ((band - 1) // 3), band):
        out += bands_mag[sibling][c]
    return out


# ---- coding ----------------------------------------------------------------------------------

def _band_steps(q: np.ndarray, mags: list[np.ndarray], band: int) -> tuple[list, np.ndarray]:
    """The decoding steps of a quantised band, (channel, positions, contexts) each, and its
    magnitudes, as the decoder will see them."""
    mag = np.zeros_like(q)
    absq = np.abs(q)
    phase = _phase(q.shape[1:])
    steps = []
    for phase1 in (False, True):
        where = phase if phase1 else ~phase
        for c in range(3):
            steps.append((c, where, _contexts(phase1, mag, mags, band, c)[where]))
            mag[c][where] = absq[c][where]
    return steps, mag


def _choose(q: np.ndarray, steps: list, choice: np.ndarray) -> None:
    """Fill ``choice`` (3, CONTEXTS) with each context's cheapest table for the band's values."""
    costs = _costs()
    absq = np.abs(q)
    for c in range(3):
        hist = np.zeros((CONTEXTS, costs.shape[1]), np.int64)
        for _, where, ctx in steps[c::3]:
            np.add.at(hist, (ctx, np.minimum(absq[c][where], costs.shape[1] - 1)), 1)
        best = np.argmin(hist @ costs.T, axis=1)
        used = hist.sum(1) > 0
        # unused contexts repeat the last used choice before them, which deflates well
        last = np.maximum.accumulate(np.where(used, np.arange(CONTEXTS), 0))
        choice[c] = np.where(used, best, best[last])


def _rdo(q: np.ndarray, ratio: np.ndarray, steps: list, choice: np.ndarray) -> np.ndarray:
    """Rate-distortion optimised quantisation: each non-zero value moves one step towards
    zero where that lowers ``(squared error in steps) + RDO * bits`` under its table."""
    costs = _costs()
    out = q.copy()
    for c, where, ctx in steps:
        v = np.abs(q[c][where])
        t = choice[c][ctx]
        top = costs.shape[1] - 1
        gain = ((ratio[c][where] - (v - 1)) ** 2 - (ratio[c][where] - v) ** 2
                + RDO * (costs[t, np.minimum(v - 1, top)] - costs[t, np.minimum(v, top)]))
        lower = (v > 0) & (gain < 0)
        vals = q[c][where]
        vals[lower] -= np.sign(vals[lower])
        out[c][where] = vals
    return out


def encode(x: np.ndarray, x_hat: np.ndarray, step: int, levels: int = LEVELS) -> bytes:
    """The ``residual`` stream of image ``x`` (H, W, 3 uint8) over its base layer ``x_hat``
    (what the base decodes to), with quantisation step ``step`` (1/64 of a code value)."""
    h, w = x.shape[:2]
    hp, wp = _padded(h, w, levels)
    r = _to_colour(x.astype(np.int16) - x_hat.astype(np.int16))
    r = np.pad(r, ((0, 0), (0, hp - h), (0, wp - w)), mode="symmetric")
    delta = step / STEP_UNIT
    coeffs = wavedec(r, levels)
    quant = [np.sign(b).astype(np.int32) * np.floor(np.abs(b) / delta + (0.5 - DEAD_ZONE)).astype(np.int32)
             for b in coeffs]
    choice = np.zeros((len(quant), 3, CONTEXTS), np.uint8)
    writer = StreamWriter()
    mags: list[np.ndarray] = []
    for band, q in enumerate(quant):
        steps, mag = _band_steps(q, mags, band)
        _choose(q, steps, choice[band])
        if RDO:
            q = quant[band] = _rdo(q, np.abs(coeffs[band]) / delta, steps, choice[band])
            steps, mag = _band_steps(q, mags, band)
            _choose(q, steps, choice[band])
        for c, where, ctx in steps:
            writer.add(tables(), q[c][where], choice[band, c][ctx])
        mags.append(mag)
    words, escapes = writer.finish()
    chosen = zlib.compress(choice.tobytes(), 9)
    return (bytes([levels]) + write_varint(step) + bytes([BIAS]) + write_varint(len(chosen)) + chosen
            + write_varint(len(words)) + words + escapes)


def describe(data: bytes) -> dict[str, float]:
    """The stream's own header: wavelet levels, step (code values) and reconstruction bias
    (steps), for ``lic info``; ``FormatError`` when they are malformed."""
    if len(data) < 3 or not 1 <= data[0] <= MAX_LEVELS:
        raise FormatError("residual stream: malformed header")
    step, pos = read_varint(data, 1, "residual stream")
    if pos >= len(data):
        raise FormatError("residual stream is truncated")
    return {"levels": data[0], "step": step / STEP_UNIT, "bias": data[pos] / 256}


def decode_integers(data: bytes, h: int, w: int) -> tuple[list[np.ndarray], float, int]:
    """The quantised coefficients of the ``residual`` stream ``data`` of an H x W image, one
    (3, h_b, w_b) int32 array a band in decoding order, its step (code values) and its bias (in
    1/256 of a step). A malformed stream raises ``FormatError``; the rANS words must be long
    enough for the image's coefficients before they are decoded."""
    if len(data) < 4:
        raise FormatError("residual stream is truncated")
    levels = data[0]
    if not 1 <= levels <= MAX_LEVELS:
        raise FormatError(f"residual stream: {levels} wavelet levels (1..{MAX_LEVELS} allowed)")
    step, pos = read_varint(data, 1, "residual stream")
    if step < 1:
        raise FormatError("residual stream: a zero quantisation step")
    if pos >= len(data):
        raise FormatError("residual stream is truncated")
    bias = data[pos]
    n, pos = read_varint(data, pos + 1, "residual stream")
    shapes = _band_shapes(h, w, levels)
    size = len(shapes) * 3 * CONTEXTS
    if pos + n > len(data):
        raise FormatError("residual stream is truncated")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data[pos: pos + n], size + 1)
    except zlib.error as e:
        raise FormatError(f"residual stream: bad table choices ({e})") from None
    if len(raw) != size or not inflater.eof or inflater.unused_data:
        raise FormatError("residual stream: the table choices do not inflate to their size")
    # every byte names one of the TABLES = 256 tables
    choice = np.frombuffer(raw, np.uint8).reshape(len(shapes), 3, CONTEXTS).astype(np.int64)
    nw, pos = read_varint(data, pos + n, "residual stream")
    if pos + nw > len(data):
        raise FormatError("residual stream is truncated")
    reader = StreamReader(data[pos: pos + nw], data[pos + nw:])
    t = tables()
    # every symbol takes at least the narrowest table's floor: refuse a stream too short for
    # the declared size before the coefficients are allocated
    narrowest = int(np.argmin(t.min_bits()))
    reader.check_room(t, np.bincount([narrowest], minlength=len(t)) * sum(3 * a * b for a, b in shapes))
    bands, mags = [], []
    for band, shape in enumerate(shapes):
        q = np.zeros((3,) + shape, np.int32)
        mag = np.zeros_like(q)
        phase = _phase(shape)
        for phase1 in (False, True):
            where = phase if phase1 else ~phase
            for c in range(3):
                ctx = _contexts(phase1, mag, mags, band, c)[where]
                # below entropy.ESCAPE_LIMIT = 2^24 in magnitude, so int32 holds them and
                # the context sums (at most 4 x 2^24 x 4)
                values = reader.take(t, choice[band, c][ctx])
                q[c][where] = values
                mag[c][where] = np.abs(values)
        mags.append(mag)
        bands.append(q)
    reader.finish()
    return bands, step / STEP_UNIT, bias


def decode(data: bytes, x_hat: np.ndarray) -> np.ndarray:
    """The image (H, W, 3 uint8) that the ``residual`` stream ``data`` and the base layer's
    ``x_hat`` decode to (:func:`decode_integers`, then the float reconstruction)."""
    h, w = x_hat.shape[:2]
    quant, delta, bias = decode_integers(data, h, w)
    bands = []
    while quant:  # each band's integers are let go once it is dequantised (memory)
        q = quant.pop(0)
        bands.append((np.sign(q) * np.where(q == 0, 0.0, np.abs(q) - bias / 256) * delta).astype(np.float32))
        del q
    r = _from_colour(waverec(bands))[:h, :w]
    del bands
    r += x_hat
    return np.clip(np.rint(r, out=r), 0, 255, out=r).astype(np.uint8)
