"""Wavelet-domain convolution (WeConv) as a residual block.

Fu, Liang, Fang, Han, Liang, Zhang, "WeConvene: Learned Image Compression with Wavelet-Domain
Convolution and Entropy Model", ECCV 2024 (arXiv 2407.09983): a convolution applied after a
one-level DWT, on the low band and the high bands separately, then the inverse DWT, so that
the layer works on a sparser, frequency-separated signal::

    x --1x1--> u --DWT--> LL --3x3, GDN----------.
                        \\-> LH,HL,HH --3x3, GDN---+--IDWT--1x1--> r        out = x + r

The last 1x1 convolution starts at zero, so a freshly built block is the identity: inserted
into trained transforms, it leaves them exactly as they were (what lets a WeConv model start
from a shipped one).

Tiling (``liccodec.tiling``). The block has net stride 1, which ``Geometry`` does not compose
from the DWT's down- and the IDWT's upsampling, so it declares its window as one stride-1
operation (:meth:`WaveletConv.axis_ops`): for Haar and a 3x3 kernel, output ``o`` reads
inputs ``o-3 .. o+3``. Tiled processing is exact (up to float rounding) when every tile
starts at an even position of the block's input, so that the DWT pairs the same samples as
on the whole image. Inside ``g_a``/``g_s`` that holds by construction: the block sits behind
a stride-2 stage, and tiles start on the chain's stride grid.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from liccodec.nn.layers import GDN
from liccodec.nn.wavelet import DWT2d, IDWT2d, get_wavelet


def _inputs_for(op: tuple[bool, int, int, int], lo: int, hi: int) -> tuple[int, int]:
    """Inclusive input range that outputs ``lo..hi`` of one (transposed) convolution read
    (the rule of ``liccodec.tiling``)."""
    transposed, k, s, p = op
    if not transposed:
        return lo * s - p, hi * s - p + k - 1
    return -((-(lo + p - k + 1)) // s), (hi + p) // s


class WaveletConv(nn.Module):
    """``x + 1x1(IDWT([lf(LL), hf(LH, HL, HH)]))`` with ``(LL, ...) = DWT(1x1(x))``, C channels.

    ``hf_groups`` = 1 convolves the three high bands jointly (3C -> 3C, as the paper's code
    does); 3 gives each band its own C -> C convolution (a third of the cost). The wavelet
    runs in float32 whatever the autocast (``compute_dtype``): bf16 lifting would add
    rounding of its own.
    """

    def __init__(self, channels: int, kernel: int = 3, hf_groups: int = 1, wavelet: str = "haar"):
        super().__init__()
        if hf_groups not in (1, 3):
            raise ValueError(f"hf_groups is 1 (joint high bands) or 3 (one per band), got {hf_groups}")
        c = channels
        self.inp = nn.Conv2d(c, c, 1)
        self.dwt = DWT2d(wavelet, compute_dtype=torch.float32)
        self.lf = nn.Sequential(nn.Conv2d(c, c, kernel, padding=kernel // 2), GDN(c))
        self.hf = nn.Sequential(nn.Conv2d(3 * c, 3 * c, kernel, padding=kernel // 2, groups=hf_groups), GDN(3 * c))
        self.idwt = IDWT2d(wavelet, compute_dtype=torch.float32)
        self.out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        bands = self.dwt(self.inp(x))
        r = self.idwt(torch.cat([self.lf(bands[:, :c]), self.hf(bands[:, c:])], dim=1))
        return x + self.out(r).to(x.dtype)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """The block's window along one axis as one stride-1 convolution ``(False, 2r+1, 1, r)``."""
        w = get_wavelet(self.dwt.wavelet)
        k = self.lf[0].kernel_size[0]
        chain = [w.synthesis_op(), (False, k, 1, k // 2), w.analysis_op()]  # output to input
        reach = 0
        for o in (2000, 2001):  # the window repeats every two outputs
            lo, hi = o, o
            for op in chain:
                lo, hi = _inputs_for(op, lo, hi)
            reach = max(reach, o - lo, hi - o)
        return [(False, 2 * reach + 1, 1, reach)]
