"""Convolutions for the numpy decoder, on (H, W, C) arrays: im2col plus one matrix product
per block of output rows, so that the work runs in the BLAS that numpy links (OpenBLAS in
the wheels) and memory stays bounded whatever the image size.

A transposed convolution runs one of two ways, never on the zeros that a
dilate-then-convolve implementation would multiply: its s*s output phases (the outputs o
with o % s == r read only the kernel taps t = (r + padding) % s, mod s) as one ordinary
convolution, or every input times every tap in one matrix product, the products then
added into the output at their offsets (``conv_transpose2d`` says which runs when).

The same functions run in float64 on integer-valued arrays for the exact networks
(``liccodec.runtime.IntegerChain``): every product and partial sum there is an integer below
2**53 (``liccodec.fixedpoint.EXACT_LIMIT``, checked at export), so the BLAS's summation
order cannot change the result.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: im2col block size: output positions times kernel taps times channels per block
BLOCK_ELEMENTS = 1 << 21
#: transposed convolutions with at most this many output channels run as ``_scatter_transpose2d``
SCATTER_MAX_CHANNELS = 16


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """(H, W, Ci) * (kh, kw, Ci, Co) -> (Ho, Wo, Co), zero padding, in x's dtype."""
    kh, kw, ci, co = w.shape
    if padding:
        x = np.pad(x, ((padding, padding), (padding, padding), (0, 0)))
    h, wd = x.shape[:2]
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {h}x{wd} is smaller than the {kh}x{kw} kernel")
    w2 = w.reshape(kh * kw * ci, co)
    out = np.empty((ho, wo, co), dtype=np.result_type(x, w))
    rows = max(1, BLOCK_ELEMENTS // max(1, wo * kh * kw * ci))
    windows = sliding_window_view(x, (kh, kw), axis=(0, 1)) if kh * kw > 1 else None
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        if windows is None:
            cols = x[r0 * stride:(r1 - 1) * stride + 1:stride, ::stride][:, :wo].reshape(-1, ci)
        else:  # (rows, wo, ci, kh, kw) -> (rows * wo, kh * kw * ci)
            cols = windows[r0 * stride:(r1 - 1) * stride + 1:stride, ::stride][:, :wo]
            cols = cols.transpose(0, 1, 3, 4, 2).reshape(-1, kh * kw * ci)
        block = out[r0:r1].reshape(-1, co)
        np.matmul(cols, w2, out=block)
        if bias is not None:
            block += bias
    return out


def _phase(r: int, stride: int, kernel: int, padding: int) -> tuple[list[int], int]:
    """Outputs ``r, r + s, ...`` of a transposed convolution along one axis: (kernel taps in
    correlation order, input read by the first tap for output r, relative to output r's
    phase index 0)."""
    c, carry = (r + padding) % stride, (r + padding) // stride
    taps = list(range(c, kernel, stride))[::-1]
    return taps, carry - (len(taps) - 1)


def conv_transpose2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride: int, padding: int,
                     output_padding: int) -> np.ndarray:
    """(H, W, Ci) through a transposed convolution with torch's weight layout (Ci, Co, k, k)
    and torch's size rule: Ho = (H - 1) * stride - 2 * padding + k + output_padding.

    All stride**2 output phases are computed by one convolution over the input window they
    read together (3x3 for k=5, stride 2), with the phases' kernels side by side in the
    output channels, then interleaved (depth to space). That spends a few multiply-adds on
    taps a phase does not have (36 instead of 25 for k=5) but runs one large matrix product
    instead of stride**2 small ones: 1.8x faster here for the synthesis' layers.

    Two cases run as ``_scatter_transpose2d`` instead, which does exactly k*k multiply-adds
    per input: few output channels (the synthesis' last layer), and float64 (the exact
    integer layers), where a multiply-add costs twice float32's and the phases' extra ones
    outweigh the scatter's adds (1.2x and 1.4x faster for the hyper-synthesis' two).
    """
    h, wd, ci = x.shape
    co, k, s = w.shape[1], w.shape[-1], stride
    ho = (h - 1) * s - 2 * padding + k + output_padding
    wo = (wd - 1) * s - 2 * padding + k + output_padding
    if co <= SCATTER_MAX_CHANNELS or np.result_type(x, w) == np.float64:
        return _scatter_transpose2d(x, w, bias, s, padding, ho, wo)
    phases = [_phase(r, s, k, padding) for r in range(s)]  # (taps, first input read)
    lo = min(first for _, first in phases)
    hi = max(first + len(taps) - 1 for taps, first in phases)
    kc = hi - lo + 1
    kern = np.zeros((kc, kc, ci, s, s, co), dtype=w.dtype)
    for ry, (ty, y0) in enumerate(phases):
        for rx, (tx, x0) in enumerate(phases):
            for u, t in enumerate(ty):
                for v, t2 in enumerate(tx):
                    kern[y0 - lo + u, x0 - lo + v, :, ry, rx, :] = w[:, :, t, t2]
    qh, qw = -(-ho // s), -(-wo // s)  # outputs per phase (the last row/column may be cut)
    # input rows lo .. qh - 1 + hi, zero outside the image
    pad_t, pad_l = max(0, -lo), max(0, -lo)
    pad_b, pad_r = max(0, qh - 1 + hi - (h - 1)), max(0, qw - 1 + hi - (wd - 1))
    xp = np.pad(x, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)))
    xp = xp[lo + pad_t:lo + pad_t + qh + kc - 1, lo + pad_l:lo + pad_l + qw + kc - 1]
    b = None if bias is None else np.tile(bias, s * s)
    out = conv2d(xp, kern.reshape(kc, kc, ci, s * s * co), b)
    out = out.reshape(qh, qw, s, s, co).transpose(0, 2, 1, 3, 4).reshape(qh * s, qw * s, co)
    return out[:ho, :wo]


def _scatter_transpose2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, s: int, padding: int,
                         ho: int, wo: int) -> np.ndarray:
    """A transposed convolution as every input position times every tap in one matrix
    product per block of input rows, each tap's products then added into the output at its
    offset. No input is copied k*k times, as the phase convolution's im2col does, and no
    multiply-add is spent on a tap a phase does not have. With few output channels (to RGB)
    the products and the output are channel-first, so that the adds run along image rows:
    2.2x faster than the phases for g_s's last layer, 128 -> 3 channels at 256x384. Returns an
    (Ho, Wo, Co) array, a view of a channel-first one in that case."""
    h, wd, ci = x.shape
    co, k = w.shape[1], w.shape[-1]
    hf, wf = max((h - 1) * s + k, padding + ho), max((wd - 1) * s + k, padding + wo)
    planar = co <= SCATTER_MAX_CHANNELS
    if planar:
        out = np.zeros((co, hf, wf), dtype=np.result_type(x, w)).transpose(1, 2, 0)
        wt = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(k * k * co, ci))
    else:
        out = np.zeros((hf, wf, co), dtype=np.result_type(x, w))
        wt = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(ci, k * k * co))
    rows = min(h, max(1, BLOCK_ELEMENTS // max(1, wd * k * k * co)))
    buf = np.empty(rows * wd * k * k * co, dtype=out.dtype)  # every block's products
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        xb = x[r0:r1].reshape(-1, ci)
        prod = buf[:xb.shape[0] * k * k * co]
        if planar:  # (rows, wd, k, k, co) views
            taps = np.matmul(wt, xb.T, out=prod.reshape(k * k * co, -1))
            taps = taps.reshape(k, k, co, r1 - r0, wd).transpose(3, 4, 0, 1, 2)
        else:
            taps = np.matmul(xb, wt, out=prod.reshape(-1, k * k * co)).reshape(r1 - r0, wd, k, k, co)
        for ky in range(k):
            for kx in range(k):
                out[r0 * s + ky:(r1 - 1) * s + ky + 1:s, kx:(wd - 1) * s + kx + 1:s] += taps[:, :, ky, kx]
    out = out[padding:padding + ho, padding:padding + wo]
    if bias is not None:
        out += bias
    return out


def gdn(x: np.ndarray, beta: np.ndarray, gamma: np.ndarray, inverse: bool) -> np.ndarray:
    """Generalized divisive normalization on (H, W, C): x / sqrt(beta + gamma x^2), or times
    it for the inverse; ``gamma[i, j]`` weighs input channel j for output channel i."""
    h, w, c = x.shape
    flat = x.reshape(-1, c)
    norm = (flat * flat) @ gamma.T
    norm += beta
    np.sqrt(norm, out=norm)
    return (flat * norm if inverse else flat / norm).reshape(h, w, c)
