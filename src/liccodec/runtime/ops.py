"""Convolutions for the numpy decoder, on (H, W, C) arrays: im2col plus one matrix product
per block of output rows, so that the work runs in the BLAS that numpy links (OpenBLAS in
the wheels) and memory stays bounded whatever the image size.

Only outputs are image-sized. Padding, im2col columns, products and the GDN's temporaries
are made a block of rows at a time, in buffers reused from block to block: touching fresh
memory costs page faults, and with image-sized temporaries those took as long as g_s's
arithmetic on this project's machine under load (docs/speed.md, session 18).

A transposed convolution runs one of two ways, never on the zeros that a
dilate-then-convolve implementation would multiply: its s*s output phases (the outputs o
with o % s == r read only the kernel taps t = (r + padding) % s, mod s) as ordinary
convolutions, one per phase on a shared im2col matrix, or every input times every tap in
one matrix product, the products then added into the output at their offsets
(``conv_transpose2d`` says which runs when).

The same functions run in float64 on integer-valued arrays for the exact networks
(``liccodec.runtime.IntegerChain``): every product and partial sum there is an integer below
2**53 (``liccodec.fixedpoint.EXACT_LIMIT``, checked at export), so the BLAS's summation
order cannot change the result.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: block size: elements of the im2col matrix (or of the products, or of the GDN's input) per block
BLOCK_ELEMENTS = 1 << 21
#: transposed convolutions with at most this many output channels run as ``_scatter_transpose2d``
SCATTER_MAX_CHANNELS = 16


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """(H, W, Ci) * (kh, kw, Ci, Co) -> (Ho, Wo, Co), zero padding, in x's dtype."""
    kh, kw, ci, co = w.shape
    h, wd = x.shape[:2]
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {h}x{wd} is smaller than the {kh}x{kw} kernel")
    w2 = w.reshape(kh * kw * ci, co)
    out = np.empty((ho, wo, co), dtype=np.result_type(x, w))
    for r0, r1, cols in _im2col(x, kh, kw, stride, -padding, ho, wo):
        block = out[r0:r1].reshape(-1, co)
        np.matmul(cols, w2, out=block)
        if bias is not None:
            block += bias
    return out


def _block_rows(rows: int, per_row: int) -> int:
    """Rows per block: at most BLOCK_ELEMENTS elements of ``per_row`` each, at least one."""
    return min(rows, max(1, BLOCK_ELEMENTS // max(1, per_row)))


def _im2col(x: np.ndarray, kh: int, kw: int, stride: int, first: int, ho: int, wo: int,
            taps: list[tuple[int, int]] | None = None):
    """The im2col matrix of a (kh, kw) convolution whose output (0, 0) reads input
    (first, first), zero outside x, one block of output rows at a time: yields (r0, r1,
    ((r1 - r0) * wo, T * Ci)), each block in the same buffer, its columns the window's
    positions in row-major order (T = kh * kw) or in the order of ``taps``, (row, column)
    pairs. Each block pads only the input rows it reads, so that no padded copy of a whole
    (large) input is made."""
    ci = x.shape[2]
    n = kh * kw if taps is None else len(taps)
    rows = _block_rows(ho, wo * n * ci)
    buf = np.empty((rows, wo, n, ci), dtype=x.dtype)
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        slab = _window(x, first + r0 * stride, (r1 - r0 - 1) * stride + kh, first, (wo - 1) * stride + kw)
        windows = sliding_window_view(slab, (kh, kw), axis=(0, 1))[::stride, ::stride]  # (rows, wo, ci, kh, kw)
        if taps is None:
            np.copyto(buf[:r1 - r0].reshape(r1 - r0, wo, kh, kw, ci), windows.transpose(0, 1, 3, 4, 2))
        else:
            for i, (ty, tx) in enumerate(taps):
                np.copyto(buf[:r1 - r0, :, i], windows[:, :, :, ty, tx])
        yield r0, r1, buf[:r1 - r0].reshape(-1, n * ci)


def _window(x: np.ndarray, r: int, n: int, c: int, m: int) -> np.ndarray:
    """x[r:r + n, c:c + m] with zeros where it reaches outside x (r and c may be negative)."""
    part = x[max(r, 0):max(r + n, 0), max(c, 0):max(c + m, 0)]
    top, left = min(max(-r, 0), n), min(max(-c, 0), m)
    pads = ((top, n - top - part.shape[0]), (left, m - left - part.shape[1]), (0, 0))
    return np.pad(part, pads) if any(a or b for a, b in pads) else part


def _phase(r: int, stride: int, kernel: int, padding: int) -> tuple[list[int], int]:
    """Outputs ``r, r + s, ...`` of a transposed convolution along one axis: (kernel taps in
    correlation order, input read by the first tap for output r, relative to output r's
    phase index 0)."""
    c, carry = (r + padding) % stride, (r + padding) // stride
    taps = list(range(c, kernel, stride))[::-1]
    return taps, carry - (len(taps) - 1)


def _phase_layout(phases: list[tuple[list[int], int]], lo: int):
    """How a transposed convolution's output phases read one shared im2col matrix: the
    window positions (row, column) in the order its columns hold them, and for each phase
    (ry, rx) the range of that order it multiplies, with its kernel tap at each position.

    Along each axis, phase r reads window positions ``first - lo + u`` (u over its taps).
    With stride 2 and one phase's positions among the other's (k = 5: {0, 1, 2} and {1, 2}),
    the order [inner x extra] [inner x inner] [extra x inner] [extra x extra], where inner
    are the smaller phase's positions and extra the rest, gives every phase a range that
    holds its taps and nothing else (25 multiply-adds per input for k = 5). Any other case
    reads the window row by row, each phase the whole rows it needs."""
    axis = [{first - lo + u: t for u, t in enumerate(taps)} for taps, first in phases]
    kc = max(max(a) for a in axis) + 1
    small = big = None
    if len(axis) == 2:
        small, big = sorted(range(2), key=lambda r: len(axis[r]))
    if small is not None and set(axis[small]) <= set(axis[big]):
        inner, extra = sorted(axis[small]), sorted(set(axis[big]) - set(axis[small]))
        groups = [[(r, c) for r in inner for c in extra], [(r, c) for r in inner for c in inner],
                  [(r, c) for r in extra for c in inner], [(r, c) for r in extra for c in extra]]
        edge = np.cumsum([0] + [len(g) for g in groups]).tolist()
        order = [t for g in groups for t in g]
        span = {(small, big): (edge[0], edge[2]), (small, small): (edge[1], edge[2]),
                (big, small): (edge[1], edge[3]), (big, big): (edge[0], edge[4])}
    else:
        order = [(r, c) for r in range(kc) for c in range(kc)]
        span = {(ry, rx): (min(axis[ry]) * kc, (max(axis[ry]) + 1) * kc)
                for ry in range(len(axis)) for rx in range(len(axis))}
    return kc, order, {ph: (a, b, [(axis[ph[0]].get(r), axis[ph[1]].get(c)) for r, c in order[a:b]])
                       for ph, (a, b) in span.items()}


def conv_transpose2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride: int, padding: int,
                     output_padding: int) -> np.ndarray:
    """(H, W, Ci) through a transposed convolution with torch's weight layout (Ci, Co, k, k)
    and torch's size rule: Ho = (H - 1) * stride - 2 * padding + k + output_padding.

    The stride**2 output phases read one input window together (3x3 for k=5, stride 2),
    whose im2col matrix is built once, its columns in an order where each phase's taps are
    one contiguous part (``_phase_layout``). Each phase is then one matrix product over its
    part, a strided view of the matrix, written straight to its outputs (depth to space).
    For k=5, stride 2, that is the kernel's 25 multiply-adds per input and output channel,
    where one product for all phases side by side did 36 (1.3-1.4x slower, docs/speed.md,
    "Session 25"), and four large products rather than four im2col matrices (1.8x slower).

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
    return _phase_transpose2d(x, w, bias, s, padding, ho, wo)


def _phase_transpose2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, s: int, padding: int,
                       ho: int, wo: int) -> np.ndarray:
    """A transposed convolution as its output phases' convolutions on one im2col matrix
    (``conv_transpose2d``); returns (Ho, Wo, Co)."""
    ci, co, k = x.shape[2], w.shape[1], w.shape[-1]
    phases = [_phase(r, s, k, padding) for r in range(s)]  # (taps, first input read)
    lo = min(first for _, first in phases)
    kc, order, layout = _phase_layout(phases, lo)
    products = []  # (ry, rx, first column, last column, kernel)
    for (ry, rx), (a, b, taps) in layout.items():
        kern = np.zeros((b - a, ci, co), dtype=w.dtype)
        for i, (ty, tx) in enumerate(taps):
            if ty is not None and tx is not None:
                kern[i] = w[:, :, ty, tx]
        products.append((ry, rx, a * ci, b * ci, kern.reshape((b - a) * ci, co)))
    qh, qw = -(-ho // s), -(-wo // s)  # outputs per phase (the last row/column may be cut)
    # each block of a phase's outputs goes straight to its place in the output (depth to space)
    out = np.empty((qh, s, qw, s, co), dtype=np.result_type(x, w))
    buf = np.empty((_block_rows(qh, qw * len(order) * ci) * qw, co), dtype=out.dtype)
    for r0, r1, cols in _im2col(x, kc, kc, 1, lo, qh, qw, order):
        for ry, rx, a, b, kern in products:
            block = np.matmul(cols[:, a:b], kern, out=buf[:len(cols)])  # a strided view of cols, no copy
            if bias is not None:
                block += bias
            out[r0:r1, ry, :, rx] = block.reshape(r1 - r0, qw, co)
    return out.reshape(qh * s, qw * s, co)[:ho, :wo]


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
    rows = _block_rows(h, wd * k * k * co)
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
    """Generalized divisive normalization of (H, W, C) x, in place: x / sqrt(beta + gamma x^2),
    or times it for the inverse; ``gamma[i, j]`` weighs input channel j for output channel i.
    Runs one block of rows at a time, so that its temporaries stay small. Returns x."""
    h, w, c = x.shape
    rows = _block_rows(h, w * c)
    square, norm = np.empty((rows * w, c), dtype=x.dtype), np.empty((rows * w, c), dtype=x.dtype)
    for r0 in range(0, h, rows):
        block = x[r0:r0 + rows]
        n = block.shape[0] * w
        np.multiply(block, block, out=square[:n].reshape(block.shape))
        np.matmul(square[:n], gamma.T, out=norm[:n])
        norm[:n] += beta
        np.sqrt(norm[:n], out=norm[:n])
        (np.multiply if inverse else np.divide)(block, norm[:n].reshape(block.shape), out=block)
    return x
