"""Deformable convolution and the deformable residual module (DRM) of Fu et al.

Fu, Liang, Liang, Wang, Fang, Zhang, Han, "Fast and high-performance learned image
compression with improved checkerboard context model, deformable residual module, and
knowledge distillation", IEEE TIP 2024 (arXiv 2309.02529), put deformable convolutions
(Dai et al., ICCV 2017) into residual blocks of the transforms, so that a block can gather
its 3x3 taps from where the content is rather than from a fixed grid::

    x --offsets = D tanh(conv3x3(x))--+
    x --------------------------------+--> deform3x3(x; offsets) -> LeakyReLU -> conv3x3 -> r
    out = x + r

:class:`DeformableConv2d` samples each tap bilinearly at its offset position with
``grid_sample`` and multiplies the stacked samples by the kernel as one 1x1 convolution: the
same numbers as ``torchvision.ops.deform_conv2d`` (tested), about five times faster on one
CPU thread, and its matrix product runs under bf16 autocast (torchvision's CPU kernel has
no bf16).

Departures from the paper, for tiling and for warm starts:

* **Bounded offsets.** An offset is ``D tanh(.)`` (``max_offset``, 2 positions by default),
  so a block reads a bounded window and can be run tile by tile like every other layer of
  the transforms (``liccodec.tiling``): its ``axis_ops()`` declare that window. The paper's
  offsets are unbounded.
* **Zero starts.** The offset convolution and the block's last convolution start at zero,
  so a new block is exactly the identity (fp32 and bf16): inserted into charm's trained
  transforms it changes nothing until it has learned.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def deform_sample(x: Tensor, offset: Tensor, kernel: int) -> Tensor:
    """(B, C, H, W) and offsets (B, 2 k k, H, W), ``(dy, dx)`` per tap in torchvision's
    order (tap t = i k + j of the k x k kernel) -> (B, C k k, H, W): channel c * k k + t
    holds ``x[c]`` bilinearly sampled at ``(h + i - k//2 + dy, w + j - k//2 + dx)``, zero
    outside the map (stride 1, same padding, no dilation)."""
    B, C, H, W = x.shape
    kk, r = kernel * kernel, kernel // 2
    d = torch.arange(kernel, device=x.device, dtype=offset.dtype) - r
    ty, tx = torch.meshgrid(d, d, indexing="ij")
    off = offset.view(B, kk, 2, H, W)
    py = torch.arange(H, device=x.device, dtype=offset.dtype).view(1, 1, H, 1) + ty.reshape(1, kk, 1, 1) + off[:, :, 0]
    px = torch.arange(W, device=x.device, dtype=offset.dtype).view(1, 1, 1, W) + tx.reshape(1, kk, 1, 1) + off[:, :, 1]
    # normalised coordinates with align_corners=False: pixel p sits at (2p + 1) / size - 1
    grid = torch.stack([(2 * px + 1) / W - 1, (2 * py + 1) / H - 1], dim=-1).reshape(B, kk * H, W, 2)
    s = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    return s.view(B, C * kk, H, W)


class DeformableConv2d(nn.Conv2d):
    """A k x k deformable convolution (stride 1, same padding) whose offsets come from a
    k x k convolution of its input, bounded to ``+-max_offset`` positions by a tanh.

    It is an ``nn.Conv2d`` (its ``weight`` and ``bias`` are the kernel's), so the
    multiply-add counts (``liccodec.eval.speed.arch_macs``) see it; ``offset`` starts at zero
    (a plain convolution until it learns)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, max_offset: float = 2.0):
        if kernel % 2 == 0 or kernel < 1:
            raise ValueError("a deformable convolution needs an odd kernel")
        if max_offset <= 0:
            raise ValueError("max_offset must be positive")
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        self.max_offset = float(max_offset)
        self.offset = nn.Conv2d(c_in, 2 * kernel * kernel, kernel, padding=kernel // 2)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def offsets(self, x: Tensor) -> Tensor:
        """(B, 2 k k, H, W) fp32: (dy, dx) per tap, in (-max_offset, max_offset)."""
        return self.max_offset * torch.tanh(self.offset(x).float())

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size[0]
        off = self.offsets(x)
        with torch.autocast(x.device.type, enabled=False):
            # the sampler in fp32: grid_sample's bf16 support differs between builds
            s = deform_sample(x.float(), off, k)
        w = self.weight.reshape(self.out_channels, -1, 1, 1)
        return F.conv2d(s.to(x.dtype), w, self.bias)

    def reach(self) -> int:
        """The farthest input (in positions, along an axis) that an output reads."""
        return self.kernel_size[0] // 2 + math.ceil(self.max_offset)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """A stride-1 window as wide as the farthest tap can sample (``liccodec.tiling``);
        the offset convolution's window (k x k) lies inside it."""
        r = self.reach()
        return [(False, 2 * r + 1, 1, r)]


class DeformableResidual(nn.Module):
    """Fu et al.'s deformable residual module on ``channels``: ``x + conv3x3(LeakyReLU(
    deform3x3(x)))``; the last convolution (``out``) and the offsets start at zero."""

    def __init__(self, channels: int, kernel: int = 3, max_offset: float = 2.0):
        super().__init__()
        self.deform = DeformableConv2d(channels, channels, kernel, max_offset)
        self.act = nn.LeakyReLU(inplace=True)
        self.out = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.out(self.act(self.deform(x))).to(x.dtype)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        k = self.out.kernel_size[0]
        return [*self.deform.axis_ops(), (False, k, 1, k // 2)]
