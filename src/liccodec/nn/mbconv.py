"""Inverted-residual (MBConv) blocks with LayerNorm + PReLU, for a heavier analysis transform.

MBConv is MobileNetV2's inverted residual (Sandler et al., CVPR 2018) with the
squeeze-excitation of Hu et al. (CVPR 2018) as EfficientNet uses it (Tan & Le, ICML 2019):
widen with a 1x1, filter each channel with a depthwise 3x3, reweight the channels, narrow
back with a 1x1, add the input. The asymmetric codecs (docs/models/asym.md) stack such
blocks in the encoder only, where their cost is paid once per image, with LayerNorm and
PReLU in place of batch norm and swish::

    x -> LN -> 1x1 (C -> eC) -> PReLU -> dw3x3 -> PReLU -> h ;  r = 1x1 (eC -> C)(h * SE(h))
    out = x + r

One LayerNorm, on the block's input (pre-norm, as ConvNeXt and MaxViT's MBConv place their
one norm), not one after each widened layer: on a CPU the elementwise passes over the
widened map, not the multiply-adds, are what a block behind g_a's first stage costs.

The last 1x1 starts at zero, so a new block is exactly the identity (in fp32 and bf16):
inserted into a trained transform it changes nothing until it has learned.

**Local squeeze.** EfficientNet's squeeze is a mean over the whole image. Here it is a mean
over a ``se_window`` x ``se_window`` window around each position (a box filter; near the
image border, over the part of the window inside the image). A whole-image statistic has no
bounded receptive field, so a transform holding it could not run tile by tile (big images,
``liccodec.tiling``) and give what it gives on the whole image; a window can. The excitation
is then a per-position 1x1 MLP (eC -> r -> eC, sigmoid), r = ``se_ratio`` x C as in
EfficientNet (the ratio is of the block's input width, not of the widened one). The first
1x1 is linear, so it is applied before the mean (which then runs on r channels, not eC):
the mean of a linear map is the map of the mean, the bias included, since the window's
weights sum to one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.nn.vss import LayerNorm2d


class NormAct(nn.Module):
    """LayerNorm over the channels of each position, then PReLU (one slope per channel)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(x).to(x.dtype))

    def axis_ops(self) -> tuple:
        """Pointwise in space (``liccodec.tiling``)."""
        return ()


def box_mean(x: Tensor, window: int) -> Tensor:
    """Mean over the ``window`` x ``window`` neighbourhood of each position (odd window),
    counting only positions inside the map: two separable 1D means."""
    pad = window // 2
    x = F.avg_pool2d(x, (1, window), stride=1, padding=(0, pad), count_include_pad=False)
    return F.avg_pool2d(x, (window, 1), stride=1, padding=(pad, 0), count_include_pad=False)


class LocalSqueezeExcite(nn.Module):
    """``x * sigmoid(expand(PReLU(box_mean(reduce(x)))))``: squeeze-excitation over a local
    window (``reduce`` before the mean: the same as after it, on fewer channels)."""

    def __init__(self, channels: int, hidden: int, window: int = 9):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"se_window must be a positive odd number of positions, got {window}")
        self.window = window
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.PReLU(hidden)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = box_mean(self.reduce(x), self.window)
        return x * torch.sigmoid(self.expand(self.act(s)))

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [(False, self.window, 1, self.window // 2)]


class MBConv(nn.Module):
    """Zero-start inverted residual block of ``channels``, widened ``expand`` times inside."""

    def __init__(self, channels: int, expand: float = 2.0, se_ratio: float = 0.25, se_window: int = 9,
                 kernel: int = 3):
        super().__init__()
        c, e = channels, max(1, round(expand * channels))
        self.kernel = kernel
        self.norm = LayerNorm2d(c)
        self.widen = nn.Conv2d(c, e, 1)
        self.act1 = nn.PReLU(e)
        self.dw = nn.Conv2d(e, e, kernel, padding=kernel // 2, groups=e)
        self.act2 = nn.PReLU(e)
        self.se = LocalSqueezeExcite(e, max(1, round(se_ratio * c)), se_window)
        self.out = nn.Conv2d(e, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act2(self.dw(self.act1(self.widen(self.norm(x).to(x.dtype)))))
        return x + self.out(self.se(h)).to(x.dtype)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """The depthwise convolution, then the squeeze window (the 1x1s and the residual
        widen nothing)."""
        return [(False, self.kernel, 1, self.kernel // 2), *self.se.axis_ops()]
