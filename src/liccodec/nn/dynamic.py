"""Dynamic-kernel convolutions and the dynamic-kernel residual block group.

A dynamic convolution holds K candidate kernels and mixes them per image with attention
weights computed from a pooled, image-wide descriptor (Chen et al., "Dynamic Convolution:
Attention over Convolution Kernels", CVPR 2020; Yang et al., "CondConv", NeurIPS 2019).
Mixing is linear, so the mixed kernel is computed once per image and applied with a single
grouped convolution over the batch: the cost is one ordinary convolution plus a tiny
(B, K) x (K, kernel) product, not K convolutions::

    ctx (B, D) --MLP--> logits (B, K) --softmax--> a (B, K)
    W_b = sum_k a[b, k] W_k;   y = conv(x as (1, B*Cin, H, W), W as (B*Cout, Cin, k, k), groups=B)

PO-DKIC (Fu, Zhang, Wang, Chen, arXiv 2401.13967, 2024) and DKIC before it (Wang, Fu,
Chen, Liu, arXiv 2308.08723) put groups of such blocks ("dynamic residual block groups") in
the transforms of a learned codec. Their dynamic kernel is a light deformable convolution
(content-dependent sampling offsets, shared weights); this module builds the
attention-over-kernels form instead, which needs no gather/sampling kernels and runs as one
dense convolution on CPU and GPU alike (docs/models/podkic.md says why).

The descriptor. Chen et al. pool each layer's own input. Here every group in a transform
reads one descriptor of the *transform's input* (per channel mean and standard deviation of
x for g_a, of y_hat for g_s; :func:`describe`), computed by :class:`RoutedSequential`. That
keeps tiled coding exact (``liccodec.tiling``): the descriptor of the whole image is
computed once and pinned (:meth:`RoutedSequential.pinned`) while tiles run, so every tile
uses the kernels the whole image would. Pooling intermediate features could not be pinned
without running the whole image first, which is what tiling avoids.

Identity at init. The router's last layer starts at zero (uniform attention, the
near-uniform start Chen et al. reach with a high softmax temperature), and each group's last
layer starts at zero, so a fresh group is exactly the identity: inserted into trained
transforms, it leaves them as they were.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def describe(x: Tensor) -> Tensor:
    """Image-wide descriptor (B, 2C): per channel mean and standard deviation, float32."""
    x = x.float()
    mean = x.mean(dim=(2, 3))
    std = (x.pow(2).mean(dim=(2, 3)) - mean.pow(2)).clamp_min(0).add(1e-6).sqrt()
    return torch.cat([mean, std], dim=1)


class KernelRouter(nn.Module):
    """Descriptor (B, D) -> attention (B, heads, K): for each of ``heads`` dynamic
    convolutions a softmax over its K kernels at ``temperature``."""

    def __init__(self, ctx_dim: int, heads: int, kernels: int, hidden: int = 32, temperature: float = 1.0):
        super().__init__()
        self.heads, self.kernels, self.temperature = heads, kernels, temperature
        self.net = nn.Sequential(nn.Linear(ctx_dim, hidden), nn.ReLU(), nn.Linear(hidden, heads * kernels))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, ctx: Tensor) -> Tensor:
        with torch.autocast(ctx.device.type, enabled=False):  # tiny; keep the weights in float32
            logits = self.net(ctx.float()).unflatten(1, (self.heads, self.kernels))
        return torch.softmax(logits / self.temperature, dim=2)


class DynamicConv2d(nn.Module):
    """Stride-1 ``k x k`` convolution whose kernel is a per-image mixture of K candidates.

    ``forward(x, a)`` takes the attention ``a`` (B, K) (e.g. from :class:`KernelRouter`).
    ``groups`` is the convolution's own channel grouping (``groups = C`` is depthwise).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, kernels: int = 4, groups: int = 1):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        self.cin, self.cout, self.k, self.groups = cin, cout, kernel, groups
        self.kernels = kernels
        # the K candidates stacked along the output axis: a 4-d tensor, as model.to(memory_format=
        # torch.channels_last) requires of every parameter
        self.weight = nn.Parameter(torch.empty(kernels * cout, cin // groups, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(kernels, cout))
        for w in self.weight.data.chunk(kernels):  # each candidate initialised as an ordinary convolution
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))

    def mixed(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image kernel (B, Cout, Cin/g, k, k) and bias (B, Cout)."""
        a = a.to(self.weight.dtype)
        w = a @ self.weight.reshape(self.kernels, -1)
        return w.reshape(-1, self.cout, self.cin // self.groups, self.k, self.k), a @ self.bias

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        b, _, h, wd = x.shape
        w, bias = self.mixed(a)  # under autocast, conv2d casts all three to the autocast dtype
        w = w.reshape(b * self.cout, self.cin // self.groups, self.k, self.k)
        y = F.conv2d(x.reshape(1, b * self.cin, h, wd), w, bias.reshape(b * self.cout), padding=self.k // 2,
                     groups=b * self.groups)
        return y.reshape(b, self.cout, h, wd)

    def reference(self, x: Tensor, a: Tensor) -> Tensor:
        """The same, one image at a time (what the grouped form must equal)."""
        w, bias = self.mixed(a)
        return torch.cat([F.conv2d(x[i:i + 1], w[i], bias[i], padding=self.k // 2, groups=self.groups)
                          for i in range(x.shape[0])])


class DynamicResidualBlock(nn.Module):
    """``x + conv2(act(conv1(x)))``, both dynamic ``k x k``, C channels."""

    def __init__(self, channels: int, kernel: int = 3, kernels: int = 4, groups: int = 1):
        super().__init__()
        self.conv1 = DynamicConv2d(channels, channels, kernel, kernels, groups)
        self.act = nn.LeakyReLU(0.2)
        self.conv2 = DynamicConv2d(channels, channels, kernel, kernels, groups)

    def forward(self, x: Tensor, a1: Tensor, a2: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x, a1)), a2)


class DynamicResidualGroup(nn.Module):
    """Dynamic-kernel residual block group: ``x + out(blocks(x))`` on C channels.

    ``blocks`` dynamic residual blocks, one router per dynamic convolution (each reads the
    transform's descriptor, ``ctx_dim`` wide), then a 1x1 convolution ``out`` that starts at
    zero: a fresh group is the identity.
    """

    def __init__(self, channels: int, ctx_dim: int, blocks: int = 2, kernel: int = 3, kernels: int = 4,
                 groups: int = 1, router_hidden: int = 32, temperature: float = 1.0):
        super().__init__()
        self.blocks = nn.ModuleList(DynamicResidualBlock(channels, kernel, kernels, groups) for _ in range(blocks))
        self.router = KernelRouter(ctx_dim, 2 * blocks, kernels, router_hidden, temperature)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, ctx: Tensor) -> Tensor:
        a = self.router(ctx)
        r = x
        for i, blk in enumerate(self.blocks):
            r = blk(r, a[:, 2 * i], a[:, 2 * i + 1])
        return x + self.out(r).to(x.dtype)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        k = self.blocks[0].conv1.k if len(self.blocks) else 1
        return [(False, k, 1, k // 2)] * (2 * len(self.blocks))


class RoutedSequential(nn.Sequential):
    """``nn.Sequential`` that hands its input's descriptor (:func:`describe`) to every
    :class:`DynamicResidualGroup` among its layers. Layer names and tiling geometry are
    those of the plain Sequential, so a routed transform loads a plain one's weights."""

    _pinned: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        ctx = self._pinned if self._pinned is not None else describe(x)
        if ctx.shape[0] != x.shape[0]:
            ctx = ctx.expand(x.shape[0], -1)
        for m in self:
            x = m(x, ctx) if isinstance(m, DynamicResidualGroup) else m(x)
        return x

    @contextmanager
    def pinned(self, whole: Tensor) -> Iterator[None]:
        """Use the descriptor of ``whole`` (the full input) while tiles of it run."""
        self._pinned = describe(whole)
        try:
            yield
        finally:
            self._pinned = None

    def has_groups(self) -> bool:
        return any(isinstance(m, DynamicResidualGroup) for m in self)
