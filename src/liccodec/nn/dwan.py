"""Wavelet-domain attention (DWAN) as a zero-start residual block.

An attention module in the manner of Cheng et al. (CVPR 2020: a trunk reweighted by a
sigmoid mask computed from the same features) whose mask is computed on, and applied to,
the Haar subbands of the features instead of the features themselves. The four bands of a
position see each other (an edge shows in LH, HL and HH together, its smooth surround in
LL), and the depthwise convolution of the mask branch works at half resolution, so a k x k
kernel covers 2k x 2k positions of the input::

    x -> LN -> 1x1 -> DWT (Haar) -> b = [LL, LH, HL, HH]   (4C channels, half resolution)
    a = sigmoid(1x1 (4C -> h) -> PReLU -> dw kxk -> PReLU -> 1x1 (h -> 4C))(b)
    r = IDWT(a * b) ;  out = x + 1x1(r)

The last 1x1 starts at zero: a new block is exactly the identity. The lifting runs in
float32 whatever the autocast (``compute_dtype``), as in ``liccodec.nn.weconv``.

Tiling: like WeConv, a DWT -> ... -> IDWT block has net stride 1, and declares its window
as one stride-1 operation (``liccodec.tiling.stride1_window``); it tiles exactly behind a
stride-2 stage, where tiles start at even positions.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from liccodec.nn.vss import LayerNorm2d
from liccodec.nn.wavelet import DWT2d, IDWT2d, get_wavelet
from liccodec.tiling import stride1_window


class WaveletAttention(nn.Module):
    """``x + 1x1(IDWT(b * sigmoid(mask(b))))``, ``b`` the Haar bands of ``1x1(LN(x))``."""

    def __init__(self, channels: int, hidden: int | None = None, kernel: int = 5, wavelet: str = "haar"):
        super().__init__()
        c, h = channels, hidden or channels
        self.kernel = kernel
        self.norm = LayerNorm2d(c)
        self.inp = nn.Conv2d(c, c, 1)
        self.dwt = DWT2d(wavelet, compute_dtype=torch.float32)
        self.mask = nn.Sequential(
            nn.Conv2d(4 * c, h, 1), nn.PReLU(h),
            nn.Conv2d(h, h, kernel, padding=kernel // 2, groups=h), nn.PReLU(h),
            nn.Conv2d(h, 4 * c, 1),
        )
        self.idwt = IDWT2d(wavelet, compute_dtype=torch.float32)
        self.out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        bands = self.dwt(self.inp(self.norm(x).to(x.dtype)))
        r = self.idwt(bands * torch.sigmoid(self.mask(bands)))
        return x + self.out(r).to(x.dtype)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """The block's window as one stride-1 convolution: output to input, the IDWT, the
        mask's depthwise kernel at half resolution, the DWT; it repeats every two outputs."""
        w, k = get_wavelet(self.dwt.wavelet), self.kernel
        return [stride1_window([w.synthesis_op(), (False, k, 1, k // 2), w.analysis_op()], period=2)]
