"""The dense block and the dense feature enhancement of S2LIC (Wang, Fu, Cao, Wang, Chen,
Liang, "S2LIC: Learned Image Compression with the SwinV2 Block, Adaptive Channel-wise and
Global-inter Attention Context", arXiv 2403.14471, 2024). Pure PyTorch.

A dense block (Huang et al., DenseNet, CVPR 2017; here in the residual form of ESRGAN's
residual dense block) is ``layers`` 3x3 convolutions, each reading the block's input and
every earlier layer's output concatenated, then a 1x1 fusion back to the input width and a
skip::

    f_0 = x,  f_k = LeakyReLU(conv_k(concat(f_0, ..., f_{k-1})))   (growth channels each)
    out = x + fuse(concat(f_0, ..., f_layers))

S2LIC puts its feature enhancement between two dense blocks at both image ends
(dense 3 -> 64, the three-convolution enhancement, dense 64 -> 3). Here that is one
zero-start residual on the image (:class:`DenseEnhancement`)::

    x -> 3x3 (3 -> width) -> dense -> enhancement (nn.swin) -> dense -> 3x3 (out, -> 3) -> r
    result = x + r

``out`` starts at zero, so a new module is exactly the identity and can be put around a
trained codec (a warm start from charm is charm).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.nn.swin import FeatureEnhancement


class DenseBlock(nn.Module):
    """Residual dense block on an NCHW map of ``channels`` (module docstring)."""

    def __init__(self, channels: int, growth: int = 16, layers: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError("a dense block needs at least one layer")
        self.convs = nn.ModuleList(nn.Conv2d(channels + k * growth, growth, 3, padding=1) for k in range(layers))
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)

    def axis_ops(self) -> list[tuple]:
        return [(False, 3, 1, 1)] * len(self.convs)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(F.leaky_relu(conv(torch.cat(feats, dim=1)), 0.2))
        return x + self.fuse(torch.cat(feats, dim=1))


class DenseEnhancement(nn.Module):
    """S2LIC's image-end feature enhancement as a zero-start residual (module docstring):
    dense block, three-convolution enhancement, dense block, at ``width`` channels."""

    def __init__(self, channels: int = 3, width: int = 16, growth: int = 8, layers: int = 2, enh_width: int = 16):
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.dense1 = DenseBlock(width, growth, layers)
        self.enh = FeatureEnhancement(width, enh_width)
        self.dense2 = DenseBlock(width, growth, layers)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def axis_ops(self) -> list[tuple]:
        return [(False, 3, 1, 1), *self.dense1.axis_ops(), *self.enh.axis_ops(), *self.dense2.axis_ops(),
                (False, 3, 1, 1)]

    def forward(self, x: Tensor) -> Tensor:
        r = self.dense2(self.enh(self.dense1(self.inp(x))))
        return x + self.out(r).to(x.dtype)
