"""3D multi-level wavelet-domain convolution (3DM-WeConv) as a residual block.

Fu, Liang, Liang, Fang, Zhang, Han, "3DM-WeConvene: Learned Image Compression with 3D
Multi-Level Wavelet-Domain Convolution and Entropy Model", arXiv 2504.04658, 2025: the
follow-up of WeConv (``liccodec.nn.weconv``). The features are taken into the wavelet domain
along the channel axis too (a one-level 1D DWT across channels, to decorrelate them) and
over several spatial levels (the 2D DWT applied again to the low band), with the JPEG 2000
wavelets (LeGall 5/3, CDF 9/7); each subband gets its own convolution, a larger kernel for
the low band, 1x1 for the sparse high bands; the inverse transforms bring the result back::

    x --1x1--> u --channel DWT--> u_L, u_H                     (C/2 channels each)
    u_L --L-level 2D DWT--> LL_L  --k_lf x k_lf, GDN--.        the low band (LLL)
                            H_L,l --k_hf x k_hf, GDN--+        level l's LH, HL, HH, l = 1..L
    u_H --L-level 2D DWT--> LL_H  --k_hf x k_hf, GDN--+        (the channel-high half: all high)
                            H_H,l --k_hf x k_hf, GDN--+
        --2D IDWTs, channel IDWT--1x1--> r                        out = x + r

With ``channel_dwt=False`` there is no channel transform (one group of C channels: the 2D
multi-level block, the ablation of the third axis). The last 1x1 convolution starts at zero,
so a new block is exactly the identity, like WeConv: inserted into trained transforms it
changes nothing until it has learned.

The transforms are ``liccodec.nn.wavelet``'s lifting (perfect reconstruction, symmetric
extension at the borders) and run in float32 whatever the autocast: bf16 lifting would add
rounding of its own.

Tiling (``liccodec.tiling``). Like WeConv, the block has net stride 1 and declares its
window as one stride-1 operation, the farthest input any output reads through any band
(``tiling.stride1_window``). With L levels it is periodic with period ``2**L``: a tile gives
the whole image's result only if it starts at a multiple of ``2**L`` of the block's input,
so that every level pairs the same samples. The block declares that period (``align``), and
the tiler starts tiles on a grid that satisfies it (a block at 1/8 of the image with two
levels: tiles of g_a on multiples of 32 pixels). The channel transform does not touch the
spatial axes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from liccodec.nn.layers import GDN
from liccodec.nn.wavelet import Pyramid, dwt, get_wavelet, idwt, wavedec2, waverec
from liccodec.tiling import stride1_window


def _wide(t: Tensor) -> Tensor:
    """At least float32 (the lifting steps' precision under bf16 autocast)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _band_conv(channels: int, kernel: int) -> nn.Sequential:
    if kernel % 2 == 0 or kernel < 1:
        raise ValueError(f"a band kernel is a positive odd size, got {kernel}")
    return nn.Sequential(nn.Conv2d(channels, channels, kernel, padding=kernel // 2), GDN(channels))


class WaveletConv3D(nn.Module):
    """``x + 1x1(IDWT(convs(DWT(1x1(x)))))`` over C channels (module docstring).

    ``wavelet``: ``legall53`` (default), ``cdf97`` or ``haar``; ``levels``: spatial levels L;
    ``kernels``: (low band, high bands) kernel sizes; ``channel_dwt``: the channel axis as the
    third wavelet axis (C even). The input's sides must be multiples of ``2**levels``.
    """

    def __init__(self, channels: int, wavelet: str = "legall53", levels: int = 2,
                 kernels: tuple[int, int] = (3, 1), channel_dwt: bool = True):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if channel_dwt and channels % 2:
            raise ValueError(f"the channel DWT pairs channels: {channels} is odd")
        if len(kernels) != 2:
            raise ValueError(f"kernels is (low band, high bands), got {kernels}")
        c = channels
        self.wavelet = get_wavelet(wavelet)
        self.levels, self.kernels, self.channel_dwt = levels, tuple(kernels), channel_dwt
        halves = 2 if channel_dwt else 1
        g = c // halves
        k_lf, k_hf = kernels
        self.inp = nn.Conv2d(c, c, 1)
        # per channel half (low first): the coarsest spatial low band, then each level's highs
        self.low = nn.ModuleList(_band_conv(g, k_lf if h == 0 else k_hf) for h in range(halves))
        self.high = nn.ModuleList(nn.ModuleList(_band_conv(3 * g, k_hf) for _ in range(levels))
                                  for _ in range(halves))
        self.out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        w = self.wavelet
        u = _wide(self.inp(x))
        halves = list(dwt(u, w, dim=-3)) if self.channel_dwt else [u]
        back = []
        for low, highs, part in zip(self.low, self.high, halves):
            p = wavedec2(part, w, self.levels)
            p = Pyramid(_wide(low(p.low)), tuple(_wide(f(h)) for f, h in zip(highs, p.highs)), w, 2)
            back.append(waverec(p))
        r = idwt(*back, w, dim=-3) if self.channel_dwt else back[0]
        return x + self.out(r).to(x.dtype)

    def axis_ops(self) -> list[tuple]:
        """The block's window along one axis as one stride-1 convolution, with its period
        ``2**levels`` as the fifth entry (``liccodec.tiling``)."""
        syn, ana = self.wavelet.synthesis_op(), self.wavelet.analysis_op()
        k_lf, k_hf = self.kernels

        def path(level: int, k: int) -> list[tuple[bool, int, int, int]]:
            # output to input: the IDWTs up from ``level``, the band's convolution, the DWTs down
            return [syn] * level + [(False, k, 1, k // 2)] + [ana] * level

        paths = [path(self.levels, k_lf), *(path(lv, k_hf) for lv in range(1, self.levels + 1))]
        period = 1 << self.levels
        return [(*stride1_window(*paths, period=period), period)]
