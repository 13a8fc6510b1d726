"""Octave convolutions around charm's GDN transforms: a high-resolution (HR) path and a
low-resolution (LR, half the size) path in every layer, with exchanges between them.

Chen et al., "Drop an Octave: Reducing Spatial Redundancy in Convolutional Neural Networks
with Octave Convolution", ICCV 2019, as learned image compression uses them (Akbari et al.,
"Generalized Octave Convolutions for Learned Multi-Frequency Image Compression", 2020; Fu et
al., "Learned Image Compression with Generalized Octave Convolution and Cross-Resolution
Parameter Estimation", arXiv 2209.03353). Per layer of stride 2 (``h``: HR input, ``l``: LR
input at half its size; ``pool``: 2x2 average, ``up``: 2x nearest)::

    h' = conv_hh(h) + up(conv_lh(l))                     (LR -> HR exchange)
    l' = conv_ll(l) + conv_hl(pool(h))                   (HR -> LR exchange)
    h'' = GDN(h'), l'' = GDN_low(l')                      (no GDN after the last layer)

``conv`` is a 5x5 stride-2 convolution in the analysis :class:`OctaveAnalysis` and a
transposed one in the synthesis :class:`OctaveSynthesis`. The analysis starts from the image
alone (its first layer has no LR input) and ends with two latents, ``y`` (HR, 1/16) and
``y_low`` (LR, 1/32); the synthesis starts from both and ends with the image (its last layer
has no LR output).

Warm starts. The HR path *is* charm's transform: its layers are charm's, under charm's names
(``g_a.0`` .. ``g_a.6``), and every LR -> HR convolution (``low.<k>.lh``) starts at zero, so
until those have learned the HR path computes exactly what charm's transform computes, bit
for bit, whatever the LR path carries. The HR -> LR exchanges start random (they do not
touch the HR path), so the LR path computes from step 0 and the zero-started exchanges get
gradients at once. The analysis' LR output layer starts scaled by ``low_init`` (the LR
latent starts small, hence nearly free to code).

The two latents travel as one tensor at 1/32 (:func:`pack`: the HR latent's 2x2 blocks as
channels, then the LR latent), so the model around them (``models.base``: tiling, the latent
codec's contract) sees one ``y``. Tiling: an output depends on a wider window than charm's
transform alone (the LR path's convolutions reach twice as far per layer); each transform
declares charm's strides plus a stride-1 widening that covers every path
(:data:`ANALYSIS_WIDEN`, :data:`SYNTHESIS_WIDEN`; tests/nn/test_octave_conv.py checks the window
path by path).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.nn.layers import GDN, conv, deconv

#: half-widths, in positions of the packed latent (1/32), of the stride-1 window each
#: transform adds to charm's geometry for tiling (path-by-path windows: tests/nn/test_octave_conv.py)
ANALYSIS_WIDEN = 1
SYNTHESIS_WIDEN = 1


def pack(y: Tensor, y_low: Tensor) -> Tensor:
    """(B, M, 2h, 2w) HR and (B, M_low, h, w) LR latent -> (B, 4M + M_low, h, w)."""
    return torch.cat([F.pixel_unshuffle(y, 2), y_low.to(y.dtype)], dim=1)


def unpack(packed: Tensor, M: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`pack`: -> (HR latent of ``M`` channels, LR latent)."""
    return F.pixel_shuffle(packed[:, :4 * M], 2), packed[:, 4 * M:]


def _pool(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 2)


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class OctaveLow(nn.Module):
    """The LR side of one octave layer: the HR -> LR convolution ``hl`` (on the pooled HR
    input), the LR -> LR one ``ll`` and the LR -> HR one ``lh`` (zero at the start; its output
    is upsampled onto the HR output), and the LR path's (inverse) GDN. A layer without LR
    input has no ``ll``/``lh``; one without LR output (the synthesis' last) only ``lh``."""

    def __init__(self, c_high_in: int, c_low_in: int, c_high_out: int, c_low_out: int,
                 transposed: bool, gdn: bool):
        super().__init__()
        layer = deconv if transposed else conv
        self.hl = layer(c_high_in, c_low_out) if c_low_out else None
        self.ll = layer(c_low_in, c_low_out) if c_low_in and c_low_out else None
        self.lh = layer(c_low_in, c_high_out) if c_low_in else None
        if self.lh is not None:
            nn.init.zeros_(self.lh.weight)
            nn.init.zeros_(self.lh.bias)
        self.gdn = GDN(c_low_out, inverse=transposed) if gdn and c_low_out else None

    def high(self, h_out: Tensor, l: Tensor | None) -> Tensor:
        """The HR output with the LR -> HR exchange added."""
        return h_out if self.lh is None else h_out + _up(self.lh(l)).to(h_out.dtype)

    def low(self, h: Tensor, l: Tensor | None) -> Tensor | None:
        """The LR output (before its GDN): HR -> LR exchange plus LR -> LR path."""
        if self.hl is None:
            return None
        out = self.hl(_pool(h))
        return out if self.ll is None else out + self.ll(l).to(out.dtype)


class _Octave(nn.Module):
    """charm's layers under charm's names (``0`` .. ``6``: convolution, GDN, ..., convolution)
    plus the LR sides of its four layers (``low``). Indexing reaches charm's layers only."""

    def __init__(self, charm: nn.Sequential, low: list[OctaveLow]):
        super().__init__()
        for i, m in enumerate(charm):
            self.add_module(str(i), m)
        self.low = nn.ModuleList(low)
        self._charm = len(charm)

    def __getitem__(self, i: int) -> nn.Module:
        return getattr(self, str(range(self._charm)[i]))

    def __len__(self) -> int:
        return self._charm

    def _run(self, h: Tensor, l: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The four octave layers on (HR, LR or None) -> (HR, LR or None)."""
        for k, side in enumerate(self.low):
            h, l = side.high(self[2 * k](h), l), side.low(h, l)
            if 2 * k + 1 < self._charm:  # charm's GDN on the HR path, the LR path's own
                h, l = self[2 * k + 1](h), side.gdn(l)
        return h, l


class OctaveAnalysis(_Octave):
    """x -> :func:`pack` (HR latent y at 1/16, LR latent y_low at 1/32)."""

    def __init__(self, charm: nn.Sequential, N_low: int, M_low: int, low_init: float = 1.0):
        convs = [m for m in charm if isinstance(m, nn.Conv2d)]
        if len(convs) != 4:
            raise ValueError("an octave analysis wraps charm's four-layer g_a")
        high = [3, *(c.out_channels for c in convs)]
        low = [0, N_low, N_low, N_low, M_low]
        sides = [OctaveLow(high[k], low[k], high[k + 1], low[k + 1], transposed=False, gdn=k < 3)
                 for k in range(4)]
        with torch.no_grad():
            for m in (sides[-1].hl, sides[-1].ll):
                m.weight.mul_(low_init)
                m.bias.mul_(low_init)
        super().__init__(charm, sides)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """charm's strides, the packing (2x2 blocks), and a window that covers the LR path."""
        w = ANALYSIS_WIDEN
        return [*((False, 5, 2, 2) for _ in range(4)), (False, 2, 2, 0), (False, 2 * w + 1, 1, w)]

    def forward(self, x: Tensor) -> Tensor:
        return pack(*self._run(x, None))


class OctaveSynthesis(_Octave):
    """:func:`pack` (y_hat at 1/16, y_low_hat at 1/32) -> x_hat."""

    def __init__(self, charm: nn.Sequential, M: int, N_low: int, M_low: int):
        convs = [m for m in charm if isinstance(m, nn.ConvTranspose2d)]
        if len(convs) != 4 or convs[0].in_channels != M:
            raise ValueError("an octave synthesis wraps charm's four-layer g_s")
        high = [M, *(c.out_channels for c in convs)]
        low = [M_low, N_low, N_low, N_low, 0]
        sides = [OctaveLow(high[k], low[k], high[k + 1], low[k + 1], transposed=True, gdn=k < 3)
                 for k in range(4)]
        super().__init__(charm, sides)
        self.M = M

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """A window that covers the LR path, the unpacking, charm's strides."""
        w = SYNTHESIS_WIDEN
        return [(False, 2 * w + 1, 1, w), (True, 2, 2, 0), *((True, 5, 2, 2) for _ in range(4))]

    def forward(self, y: Tensor) -> Tensor:
        return self._run(*unpack(y, self.M))[0]
