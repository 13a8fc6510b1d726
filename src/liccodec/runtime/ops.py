"""Convolutions for the numpy decoder, on (H, W, C) arrays: im2col plus one matrix product
per block of output rows, so that the work runs in the BLAS that numpy links (OpenBLAS in
the wheels) and memory stays bounded whatever the image size.

A transposed convolution of stride s is computed as s*s ordinary convolutions, one per
output phase (the outputs o with o % s == r read only the kernel taps t with
t = (r + padding) % s, mod s): the same multiply-adds as the direct definition, none spent
on the zeros that a dilate-then-convolve implementation would multiply.

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


def _phase(r: int, stride: int, kernel: int, padding: int, n_in: int, n_out: int) -> tuple[list[int], int, int]:
    """Outputs ``r, r + s, ...`` of a transposed convolution along one axis: (kernel taps in
    correlation order, first input read for the first such output, number of outputs)."""
    c, carry = (r + padding) % stride, (r + padding) // stride
    taps = list(range(c, kernel, stride))[::-1]
    return taps, carry - (len(taps) - 1), len(range(r, n_out, stride))


def conv_transpose2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, stride: int, padding: int,
                     output_padding: int) -> np.ndarray:
    """(H, W, Ci) through a transposed convolution with torch's weight layout (Ci, Co, k, k)
    and torch's size rule: Ho = (H - 1) * stride - 2 * padding + k + output_padding."""
    h, wd, ci = x.shape
    co, k = w.shape[1], w.shape[-1]
    ho = (h - 1) * stride - 2 * padding + k + output_padding
    wo = (wd - 1) * stride - 2 * padding + k + output_padding
    out = np.empty((ho, wo, co), dtype=np.result_type(x, w))
    # zeros around the input once: every phase then reads a view of it
    pad = k + stride
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    for ry in range(min(stride, ho)):
        ty, y0, qy = _phase(ry, stride, k, padding, h, ho)
        for rx in range(min(stride, wo)):
            tx, x0, qx = _phase(rx, stride, k, padding, wd, wo)
            if not ty or not tx:
                out[ry::stride, rx::stride] = 0 if bias is None else bias
                continue
            sub = xp[pad + y0:pad + y0 + qy + len(ty) - 1, pad + x0:pad + x0 + qx + len(tx) - 1]
            kern = w[:, :, ty][:, :, :, tx].transpose(2, 3, 0, 1)  # (ky, kx, Ci, Co)
            out[ry::stride, rx::stride] = conv2d(sub, np.ascontiguousarray(kern), bias)
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
