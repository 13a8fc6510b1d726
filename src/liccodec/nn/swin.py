"""SwinV2 window attention, the residual SwinV2 transformer block (RSTB) and the three-
convolution feature enhancement of the Residual SwinV2 Transformer codec (Wang et al.,
"Enhanced Residual SwinV2 Transformer for Learned Image Compression", arXiv 2308.11864,
2023). Pure PyTorch.

SwinV2 (Liu et al., "Swin Transformer V2: Scaling Up Capacity and Resolution", CVPR 2022,
arXiv 2111.09883) changes three things in a Swin layer, all kept here:

* **scaled cosine attention**: logits are cos(q, k) times a learned per-head scale
  ``exp(min(logit_scale, log 100))`` (starting at 10), not q . k / sqrt(d);
* **log-spaced continuous position bias**: the bias of a relative offset (dy, dx) is a small
  MLP of ``sign(d) * log2(1 + 8 |d| / (w - 1)) / log2(8)``, squashed to ``16 sigmoid(.)``;
* **residual post-norm**: ``x + LayerNorm(attn(x))`` and ``x + LayerNorm(mlp(x))`` (the norm
  on the branch's output, not its input); q and v have biases, k none.

A residual Swin transformer block (SwinIR, Liang et al. 2021, which the paper builds on) is
a few such layers, alternately with regular and half-shifted windows, a 3x3 convolution and a
skip: ``out = x + conv(layers(x))``. Here that convolution (``out``) starts at zero, so a new
block is exactly the identity and can be inserted into trained transforms.

Windows and tiling. A window layer is not shift-invariant: it is periodic with the window
side ``w``. Its windows are anchored at its input's origin (regular: ``[k w, (k+1) w)``;
shifted by ``s = w/2``: ``[k w - s, (k+1) w - s)``), never resized to the input, and a map
whose sides are not multiples of ``w`` is padded with positions that are *masked out* as
keys (they take no part in any softmax), so a window cut by the border attends over its
real positions only. For a map whose sides are multiples of ``w`` a shifted layer uses Swin's
cyclic shift and group mask instead, which forms the same groups with fewer windows. Masked
logits are ``-inf``, not Swin's ``-100``: cosine logits reach 116. Each layer declares its
receptive field honestly to ``liccodec.tiling``: output ``o`` reads its own window, at most
``w - 1`` positions away, and the layer's period is ``w`` (``align``), so tiles start where
a tile and the whole image cut the same windows, and a tile's kept core sees exactly what
the whole image sees.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the largest attention logit scale (SwinV2: 1 / 0.01)
MAX_LOGIT_SCALE = math.log(100.0)


def _logit_dtype(t: Tensor) -> torch.dtype:
    """Attention logits and their softmax run in float32 (float64 for float64 input), also
    under bf16 autocast: a logit scale of up to 100 leaves bf16 too few bits for the weights."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def window_partition(x: Tensor, w: int) -> Tensor:
    """(b, H, W, c) with H and W multiples of ``w`` -> (b, nH * nW, w * w, c), windows in
    row-major order, positions row-major inside each window."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // w) * (wd // w), w * w, c)


def window_merge(t: Tensor, w: int, h: int, wd: int) -> Tensor:
    """Inverse of :func:`window_partition`: (b, nW, w * w, c) -> (b, h, wd, c)."""
    b, _, _, c = t.shape
    t = t.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(b, h, wd, c)


def log_spaced_offsets(w: int) -> Tensor:
    """The ((2w-1)^2, 2) relative offsets (dy, dx) of a w x w window, log-spaced as in SwinV2:
    ``sign(d) * log2(1 + 8 |d| / (w - 1)) / log2(8)`` (at most log2(9) / 3 in size)."""
    r = torch.arange(-(w - 1), w, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)
    table = table / max(w - 1, 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_index(w: int) -> Tensor:
    """(w*w, w*w) index into :func:`log_spaced_offsets` of the offset from key to query."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (w - 1)
    dx = xs[:, None] - xs[None, :] + (w - 1)
    return dy * (2 * w - 1) + dx


def _groups(n: int, w: int, s: int, device: torch.device) -> Tensor:
    """Along one axis of length ``n`` (a multiple of ``w``) rolled by ``-s``: which of the
    three groups of Swin's shifted-window mask each position is in (the last window holds
    the first ``s`` positions and the ``w - s`` before the end, which must not mix)."""
    g = torch.zeros(n, dtype=torch.long, device=device)
    g[n - w:n - s] = 1
    g[n - s:] = 2
    return g


class WindowAttentionV2(nn.Module):
    """Multi-head scaled cosine attention inside windows, with SwinV2's continuous position
    bias. Input and output (b, nW, w*w, c); ``allowed`` (nW, w*w or 1, w*w), if given, is
    True where a query may attend to a key."""

    def __init__(self, dim: int, heads: int, window: int, cpb_hidden: int = 512):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels do not split into {heads} heads")
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb = nn.Sequential(nn.Linear(2, cpb_hidden), nn.ReLU(), nn.Linear(cpb_hidden, heads, bias=False))
        self.proj = nn.Linear(dim, dim)
        # derived from the window alone: not part of the state (nor of the shipped weights)
        self.register_buffer("offsets", log_spaced_offsets(window), persistent=False)
        self.register_buffer("index", relative_index(window), persistent=False)

    def position_bias(self) -> Tensor:
        """(heads, w*w, w*w): ``16 sigmoid(cpb(offset))`` of each query-key pair."""
        table = self.cpb(self.offsets.to(self.cpb[0].weight.dtype))  # ((2w-1)^2, heads)
        return 16 * torch.sigmoid(table[self.index].permute(2, 0, 1).to(_logit_dtype(table)))

    def forward(self, x: Tensor, allowed: Tensor | None = None) -> Tensor:
        b, n, t, c = x.shape
        h = self.heads
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.view(b, n, t, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)  # each (b, n, h, t, d)
        scale = torch.exp(self.logit_scale.clamp(max=MAX_LOGIT_SCALE))  # (h, 1, 1)
        cos = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = cos.to(_logit_dtype(cos)) * scale
        logits = logits + self.position_bias()
        if allowed is not None:  # a masked key has exactly zero weight
            logits = logits.masked_fill(~allowed[:, None], float("-inf"))
        attn = torch.softmax(logits, dim=-1).to(v.dtype)
        out = (attn @ v).permute(0, 1, 3, 2, 4).reshape(b, n, t, c)
        return self.proj(out)


class SwinV2Layer(nn.Module):
    """One SwinV2 transformer layer on a (b, H, W, c) map: window attention (regular or
    shifted by half a window) and an MLP, each a residual branch with post-norm."""

    def __init__(self, dim: int, heads: int, window: int, shifted: bool, mlp_ratio: float = 4.0,
                 cpb_hidden: int = 512):
        super().__init__()
        self.window, self.shift = window, (window // 2 if shifted else 0)
        self.attn = WindowAttentionV2(dim, heads, window, cpb_hidden)
        self.norm1 = nn.LayerNorm(dim)
        hidden = max(1, round(mlp_ratio * dim))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def axis_ops(self) -> list[tuple]:
        # output o reads its own window only: at most w-1 away; the windows repeat every w
        w = self.window
        return [(False, 2 * w - 1, 1, w - 1, w)]

    def _attend(self, x: Tensor) -> Tensor:
        """Window attention of a (b, H, W, c) map, as a (b, H, W, c) map."""
        b, h, wd, c = x.shape
        w, s = self.window, self.shift
        if h % w == 0 and wd % w == 0:
            if not s:
                return window_merge(self.attn(window_partition(x, w)), w, h, wd)
            # Swin's cyclic shift: the windows that wrap around hold two or four groups of
            # positions, masked apart; the same groups as the padded form below, fewer windows
            rolled = torch.roll(x, (-s, -s), dims=(1, 2))
            group = (_groups(h, w, s, x.device)[:, None] * 3 + _groups(wd, w, s, x.device)[None, :])
            group = window_partition(group[None, :, :, None], w)[0, :, :, 0]  # (nW, T)
            a = self.attn(window_partition(rolled, w), group[:, :, None] == group[:, None, :])
            return torch.roll(window_merge(a, w, h, wd), (s, s), dims=(1, 2))
        # pad: the shift on the top/left, the rest of the last window on the bottom/right;
        # padded positions are no keys
        pb, pr = -(h + s) % w, -(wd + s) % w
        real = torch.zeros(1, h + s + pb, wd + s + pr, 1, dtype=torch.bool, device=x.device)
        real[:, s:s + h, s:s + wd] = True
        a = self.attn(window_partition(F.pad(x, (0, 0, s, pr, s, pb)), w),
                      window_partition(real, w)[0, :, None, :, 0])
        # a contiguous crop: a strided map makes every later kernel slow
        return window_merge(a, w, h + s + pb, wd + s + pr)[:, s:s + h, s:s + wd].contiguous()

    def forward(self, x: Tensor) -> Tensor:
        a = self._attend(x)
        x = x + self.norm1(a)
        return x + self.norm2(self.mlp(x))


class ResidualSwinV2Block(nn.Module):
    """Residual SwinV2 transformer block on an NCHW map, a zero-start residual::

        x -> [SwinV2 layer (windows), SwinV2 layer (shifted windows), ...] -> 3x3 conv (out) -> r
        result = x + r

    ``depth`` layers, alternately regular and shifted; ``heads`` attention heads (the
    channels must split evenly). ``out`` starts at zero, so a new block is the identity.
    """

    def __init__(self, channels: int, depth: int = 2, heads: int = 4, window: int = 8,
                 mlp_ratio: float = 4.0, cpb_hidden: int = 512):
        super().__init__()
        if depth < 1 or window < 2:
            raise ValueError("a residual SwinV2 block needs depth >= 1 and window >= 2")
        self.layers = nn.ModuleList(SwinV2Layer(channels, heads, window, i % 2 == 1, mlp_ratio, cpb_hidden)
                                    for i in range(depth))
        self.out = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def axis_ops(self) -> list[tuple]:
        return [op for layer in self.layers for op in layer.axis_ops()] + [(False, 3, 1, 1)]

    def forward(self, x: Tensor) -> Tensor:
        t = x.permute(0, 2, 3, 1)
        for layer in self.layers:
            t = layer(t)
        r = t.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).to(x.dtype)
        return x + self.out(r).to(x.dtype)


class FeatureEnhancement(nn.Module):
    """The paper's feature enhancement: three consecutive convolutions, 1x1 -> 3x3 -> 1x1,
    as a zero-start residual::

        x -> 1x1 (channels -> width), LeakyReLU -> 3x3, LeakyReLU -> 1x1 (out, -> channels) -> r
        result = x + r

    ``out`` starts at zero, so a new module is the identity.
    """

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 1)
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def axis_ops(self) -> list[tuple]:
        return [(False, 3, 1, 1)]

    def forward(self, x: Tensor) -> Tensor:
        r = F.leaky_relu(self.mid(F.leaky_relu(self.inp(x), 0.2)), 0.2)
        return x + self.out(r).to(x.dtype)
