"""Tiled processing of convolutional chains: big images in bounded memory, no seams.

An output position of a chain of convolutions depends only on a bounded window of the
chain's input: its receptive field. Cut the input into tiles, grow every tile by a *halo*
at least as wide as that window (clipped at the image border), run the chain on each grown
tile and keep only the part of its output that belongs to the tile's core. Every kept
output then saw exactly the inputs it sees in whole-image processing, zero padding included
(a tile edge that is also an image edge pads like the image does; an inner tile edge is
far enough away that its padding never reaches a kept output). So

* integer chains (``liccodec.nn.integer``) give bit-identical results tiled or not, and
* float chains differ only by summation-order rounding (a convolution library blocks its
  sums differently for different tensor sizes), far below one code value.

Tiles start on the chain's stride grid (a multiple of its total downsampling), so a tile's
outputs land on the whole image's output grid. A layer that is not shift-invariant but
periodic, say a block that takes an L-level wavelet transform and inverts it, gives the same
result on a tile only where the tile starts on its period (``2**L`` of its own inputs, so
that the transform pairs the same samples): it declares that period as a fifth entry of its
``axis_ops()`` (``align``), and tiles then start on the coarser grid that puts every such
layer's inputs on its period.

The halo is computed from the layers (:meth:`Geometry.of`), never written by hand: the
interval of inputs that a block of outputs needs is propagated backwards through every
(transposed) convolution. Layers that act on each position separately (GDN, ReLU, ...)
do not widen it.

Layers declare their geometry themselves: a module (or any chain element) with a method
``axis_ops()`` returns the (transposed) convolutions it amounts to along one spatial axis,
as ``(transposed, kernel, stride, padding)`` tuples, ``()`` when it is pointwise (GDN,
the integer networks and the slice networks do this). torch's own convolutions and
elementwise activations are known here; any other layer must declare itself, or tiling
refuses it (an attention or a scan layer over the whole image cannot be tiled exactly).

Whole-image versus tiled is chosen by :class:`TilePolicy` (an image-pixel threshold and a
tile size), which only changes *how* the decoder computes, never what the bitstream means.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

#: Images above this many (padded) pixels are coded tile by tile. At 4 Mpx the whole-image
#: float transforms of msh.mse already need about 2 GiB; below it tiling only costs time.
DEFAULT_THRESHOLD = 1 << 22
#: Core tile side in image pixels (a multiple of 64, the codec's total downsampling).
DEFAULT_TILE = 1024
TILE_MULTIPLE = 64

#: names of the torch modules that act on each spatial position on its own (they do not
#: widen the halo); layers of this package declare themselves with ``axis_ops()`` instead.
#: This module does not import torch: the numpy decoder (``liccodec.runtime``) tiles too.
TORCH_POINTWISE = ("ReLU", "LeakyReLU", "Identity", "Sigmoid", "Tanh", "GELU", "SiLU", "Hardtanh")


@dataclass(frozen=True)
class _AxisOp:
    """One (transposed) convolution seen along one spatial axis; ``align`` > 1: its input must
    be cut at multiples of ``align`` (a periodic layer, see the module docstring)."""

    transposed: bool
    kernel: int
    stride: int
    padding: int
    align: int = 1

    def inputs_for(self, lo: int, hi: int) -> tuple[int, int]:
        """Inclusive range of input positions that outputs ``lo..hi`` (inclusive) read."""
        k, s, p = self.kernel, self.stride, self.padding
        if not self.transposed:  # out[o] reads in[o*s - p .. o*s - p + k - 1]
            return lo * s - p, hi * s - p + k - 1
        # out[o] receives in[i] for o = i*s - p + t, t in 0..k-1
        return -((-(lo + p - k + 1)) // s), (hi + p) // s


def _square(v: int | tuple[int, ...], what: str) -> int:
    vals = (v,) if isinstance(v, int) else tuple(v)
    if len(set(vals)) != 1:
        raise ValueError(f"tiling needs square {what}, got {v}")
    return int(vals[0])


def _axis_ops(layers: Iterable[object]) -> Iterator[_AxisOp]:
    # a torch module can only exist once torch is imported; this module never imports it
    nn = sys.modules["torch.nn"] if "torch.nn" in sys.modules else None
    for m in layers:
        declared = getattr(m, "axis_ops", None)
        if callable(declared):
            yield from (_AxisOp(*op) for op in declared())
        elif nn is None:
            raise ValueError(f"cannot tell the receptive field of {type(m).__name__}: "
                             "give it an axis_ops() method (see liccodec.tiling)")
        elif isinstance(m, nn.Sequential):
            yield from _axis_ops(m)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if _square(m.dilation, "dilation") != 1:
                raise ValueError("tiling does not support dilated convolutions")
            if isinstance(m.padding, str):
                raise ValueError("tiling needs numeric padding")
            yield _AxisOp(isinstance(m, nn.ConvTranspose2d), _square(m.kernel_size, "kernels"),
                          _square(m.stride, "strides"), _square(m.padding, "padding"))
        elif isinstance(m, nn.Module) and type(m).__name__ in TORCH_POINTWISE and type(m).__module__.startswith("torch."):
            continue
        else:
            raise ValueError(f"cannot tell the receptive field of {type(m).__name__}: "
                             "give it an axis_ops() method (see liccodec.tiling)")


def axis_ops(*layers: object) -> list[tuple]:
    """The chain's (transposed, kernel, stride, padding[, align]) per axis: what a composite
    layer returns from its own ``axis_ops()``."""
    return [(op.transposed, op.kernel, op.stride, op.padding, *((op.align,) if op.align > 1 else ()))
            for op in _axis_ops(layers)]


def stride1_window(*paths: Iterable[tuple[bool, int, int, int]], period: int = 1) -> tuple[bool, int, int, int]:
    """The window of a block of net stride 1 as one stride-1 convolution ``(False, 2r+1, 1, r)``.

    ``Geometry`` does not compose a chain that both down- and upsamples (a DWT -> ... -> IDWT
    block, a pooling whose result is spread back over its cells), so such a block declares
    its window itself. Its output ``o`` reads its input through each of ``paths``, a chain of
    ``(transposed, kernel, stride, padding)`` ops listed **from the output back to the
    input**; ``r`` is the farthest input any output reads. The pattern repeats every
    ``period`` outputs (2 for one wavelet level). Tiling is then exact where tiles start on
    multiples of ``period`` of the block's input, which a block behind stride-2 stages has
    by construction (tiles start on the chain's stride grid).
    """
    reach = 0
    for path in paths:
        ops = [_AxisOp(*op) for op in path]
        for o in range(1000 * period, 1001 * period):
            lo, hi = o, o
            for op in ops:
                lo, hi = op.inputs_for(lo, hi)
            reach = max(reach, o - lo, hi - o)
    return (False, 2 * reach + 1, 1, reach)

@dataclass(frozen=True)
class Geometry:
    """How a chain maps positions along each spatial axis.

    ``up`` output positions per input position (transposed convolutions) or ``down`` input
    positions per output position (strided ones); one of the two is 1. ``align`` (1 when no
    layer declares a period) is the multiple of input positions at which a periodic layer's
    inputs start on its period. ``halo`` is the context, in input positions on each side of a
    tile's core, that makes the core's outputs exact; it is a multiple of :attr:`grid` so that
    grown tiles stay on the grid.
    """

    up: int
    down: int
    halo: int
    align: int = 1

    @property
    def grid(self) -> int:
        """Tiles (cores and grown) start at multiples of this many input positions."""
        return math.lcm(self.down, self.align)

    @classmethod
    def of(cls, *layers: object) -> "Geometry":
        """Geometry of a chain: modules, ``nn.Sequential``\\ s or anything with ``axis_ops()``."""
        ops = list(_axis_ops(layers))
        up = math.prod(op.stride for op in ops if op.transposed)
        down = math.prod(op.stride for op in ops if not op.transposed)
        if up > 1 and down > 1:
            raise ValueError("tiling supports chains that only downsample or only upsample")
        # input position p reaches a layer as p / d (d: the strides before it) or p * u (u: the
        # upsampling before it); that must be a multiple of the layer's period
        align, scale = 1, 1
        for op in ops:
            if op.align > 1:
                align = math.lcm(align, op.align * scale if down > 1 else op.align // math.gcd(op.align, scale))
            scale *= op.stride
        halo = 0
        # The geometry repeats every `down` inputs (every input for upsampling chains), so a
        # few aligned cores give the margin everywhere; several guard against off-by-one luck.
        for c0 in (down * 1000 * k for k in (1, 2, 3)):
            c1 = c0 + down
            lo, hi = c0 * up // down, c1 * up // down - 1
            for op in reversed(ops):
                lo, hi = op.inputs_for(lo, hi)
            halo = max(halo, c0 - lo, hi - (c1 - 1))
        grid = math.lcm(down, align)
        return cls(up, down, -(-halo // grid) * grid, align)

    def out_len(self, n: int) -> int:
        if n % self.down:
            raise ValueError(f"length {n} is not a multiple of the chain's downsampling {self.down}")
        return n * self.up // self.down


@dataclass(frozen=True)
class Span:
    """One tile along one axis: its core ``[start, stop)`` and grown ``[lo, hi)``, in inputs."""

    start: int
    stop: int
    lo: int
    hi: int


def spans(length: int, core: int, halo: int) -> list[Span]:
    """Cut ``0..length`` into cores of ``core`` (the last one shorter) grown by ``halo``."""
    if core <= 0:
        raise ValueError("tile core must be positive")
    return [Span(s, min(s + core, length), max(0, s - halo), min(length, s + core + halo))
            for s in range(0, length, core)]


def run_tiled(fn: Callable[[Tensor], Tensor], x: Tensor, geo: Geometry, core: int) -> Tensor:
    """``fn(x)`` computed tile by tile; ``fn`` is a chain with geometry ``geo``.

    ``x`` is NCHW (a torch tensor or a numpy array) with H and W multiples of ``geo.down``;
    ``core`` is the tile core side in input positions (rounded up to a multiple of
    ``geo.grid``). The result is a new contiguous NCHW tensor (or array) with ``fn``'s
    channels and dtype.
    """
    grid = geo.grid
    core = max(grid, -(-core // grid) * grid)
    h, w = x.shape[-2:]
    oh, ow = geo.out_len(h), geo.out_len(w)
    out: Tensor | None = None
    for r in spans(h, core, geo.halo):
        for c in spans(w, core, geo.halo):
            y = fn(x[..., r.lo:r.hi, c.lo:c.hi])
            if out is None:
                shape = (*y.shape[:-2], oh, ow)
                out = (np.empty(shape, y.dtype) if isinstance(y, np.ndarray)
                       else y.new_empty(shape))
            # the core's place inside the grown tile, in output positions
            t, l = geo.out_len(r.start - r.lo), geo.out_len(c.start - c.lo)
            rh, cw = geo.out_len(r.stop - r.start), geo.out_len(c.stop - c.start)
            out[..., geo.out_len(r.start):geo.out_len(r.stop), geo.out_len(c.start):geo.out_len(c.stop)] = \
                y[..., t:t + rh, l:l + cw]
            del y
    assert out is not None
    return out


@dataclass(frozen=True)
class TilePolicy:
    """When and how finely to tile: images above ``threshold`` padded pixels are cut into
    tiles of ``tile`` x ``tile`` image pixels (a multiple of 64).

    Defaults come from ``$LICCODEC_TILE_THRESHOLD`` (pixels; 0 tiles every image, a
    negative value never tiles) and ``$LICCODEC_TILE_SIZE`` via :meth:`from_env`.
    """

    threshold: int = DEFAULT_THRESHOLD
    tile: int = DEFAULT_TILE

    def __post_init__(self) -> None:
        if self.tile < TILE_MULTIPLE or self.tile % TILE_MULTIPLE:
            raise ValueError(f"tile size must be a positive multiple of {TILE_MULTIPLE}, got {self.tile}")

    @classmethod
    def from_env(cls) -> "TilePolicy":
        def read(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip()
            try:
                return int(raw) if raw else default
            except ValueError:
                raise ValueError(f"${name} must be an integer, got {raw!r}") from None

        return cls(read("LICCODEC_TILE_THRESHOLD", DEFAULT_THRESHOLD), read("LICCODEC_TILE_SIZE", DEFAULT_TILE))

    @classmethod
    def never(cls) -> "TilePolicy":
        return cls(threshold=-1)

    def applies(self, height: int, width: int) -> bool:
        return self.threshold >= 0 and height * width > self.threshold

    def core(self, pixels_per_position: int) -> int:
        """Tile core side at a level where one position covers ``pixels_per_position`` pixels."""
        return max(1, self.tile // pixels_per_position)
