"""Region-of-interest coding: a quality per latent position, from a mask or a grey quality map.

The shipped models are variable-rate through gain units (``latent.hyperprior``): quality q
scales ``y`` by a gain vector per channel before quantization. Choosing that vector per
position of ``y`` (one per 16x16 pixels) instead of once per image spends more bits where the
caller asks for them, with the same weights (docs/roi.md). Two ways to ask, in the Python
API (:func:`liccodec.encode`) and on the command line alike:

* ``roi`` (``--roi MASK``): a mask of the image's size, white (grey level >= 128) marks the
  region, coded at ``quality``; the rest is coded at ``roi_background`` (default: the
  model's lowest quality);
* ``quality_map`` (``--quality-map MAP``): grey levels of an image of the image's size set
  the quality linearly, 0 -> ``quality_range[0]``, 255 -> ``quality_range[1]`` (default: the
  model's whole range), rounded to a thousandth.

A latent position takes the highest quality that any pixel of its 16x16 block asks for (so
a region is never coded below its quality; the padding beyond the image's edge copies the
edge, as the image's own padding does). A map that comes out uniform on the latent grid is
coded as a plain file at that quality, bit for bit the file ``quality`` alone writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from liccodec.container import QualityMap
from liccodec.errors import UsageError

#: a mask's grey levels from this one up mark the region of interest
MASK_THRESHOLD = 128


@dataclass(frozen=True)
class QualityRequest:
    """Grey levels ``levels`` ((H, W) uint8, the image's size) mapped linearly to qualities:
    0 -> ``low``, 255 -> ``high`` (thousandths; ``low > high`` inverts). A mask is the
    special case of levels 0 and 255."""

    levels: np.ndarray
    low: int
    high: int

    def latent_qualities(self, stride: int, multiple: int) -> np.ndarray:
        """Quality of every position of y, (H' / stride, W' / stride) int64 thousandths, for
        the image padded to (H', W'), multiples of ``multiple``, by edge replication."""
        h, w = self.levels.shape
        ph, pw = (-h) % multiple, (-w) % multiple
        g = np.pad(self.levels, ((0, ph), (0, pw)), mode="edge") if ph or pw else self.levels
        blocks = g.reshape(g.shape[0] // stride, stride, g.shape[1] // stride, stride)
        # the grey level that asks for the most quality in each block
        g = blocks.max(axis=(1, 3)) if self.high >= self.low else blocks.min(axis=(1, 3))
        lut = np.rint(self.low + (self.high - self.low) * np.arange(256) / 255.0).astype(np.int64)
        return lut[g]


def read_grey(src: str | Path | bytes | Image.Image | np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    """A mask or map (a path, encoded bytes, a Pillow image or a 2-d array; bool arrays are
    0/255) as (H, W) uint8 grey levels; it must have the image's ``size`` (width, height)."""
    if isinstance(src, np.ndarray):
        if src.ndim != 2:
            raise UsageError(f"the {what} must be a 2-d array (height, width), got shape {src.shape}")
        if src.dtype == bool:
            grey = src.astype(np.uint8) * 255
        elif np.issubdtype(src.dtype, np.integer) and (src.size == 0 or 0 <= src.min() <= src.max() <= 255):
            grey = np.ascontiguousarray(src, dtype=np.uint8)
        else:
            raise UsageError(f"the {what} must hold booleans or integers 0..255 (got {src.dtype} values"
                             f"{' outside 0..255' if np.issubdtype(src.dtype, np.integer) else ''})")
    else:
        from liccodec.imageio import open_image

        img = open_image(src)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits
            grey = (np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        else:
            grey = np.asarray(img.convert("L"))
    if (grey.shape[1], grey.shape[0]) != tuple(size):
        raise UsageError(f"the {what} is {grey.shape[1]}x{grey.shape[0]} pixels; it must be the image's "
                         f"size, {size[0]}x{size[1]}")
    return grey


def request(spec, size: tuple[int, int], quality: float | None = None, roi=None,
            roi_background: float | None = None, quality_map=None,
            quality_range: tuple[float, float] | None = None) -> QualityRequest | None:
    """Check and read what the caller asked for (see the module docstring); None when neither
    ``roi`` nor ``quality_map`` is given. Every mistake is a ``UsageError``."""
    from liccodec.codec import quality_milli

    if roi is not None and quality_map is not None:
        raise UsageError("--roi and --quality-map exclude each other: give one")
    if roi is None and roi_background is not None:
        raise UsageError("--roi-background needs --roi")
    if quality_map is None and quality_range is not None:
        raise UsageError("--quality-range needs --quality-map")
    if roi is not None:
        high = quality_milli(spec, quality, extended=False)
        low = quality_milli(spec, spec.quality_min if roi_background is None else roi_background, extended=False)
        levels = np.where(read_grey(roi, size, "ROI mask") >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
        return QualityRequest(levels, low, high)
    if quality_map is not None:
        if quality is not None:
            raise UsageError("-q and --quality-map exclude each other: the map sets the quality "
                             "(--quality-range LO,HI sets its range)")
        lo, hi = (spec.quality_min, spec.quality_max) if quality_range is None else quality_range
        low, high = quality_milli(spec, lo, extended=False), quality_milli(spec, hi, extended=False)
        if low > high:
            raise UsageError(f"--quality-range {lo:g},{hi:g}: the first quality (for black) must not "
                             "exceed the second (for white)")
        return QualityRequest(read_grey(quality_map, size, "quality map"), low, high)
    return None


def base_quality(qmap: QualityMap) -> int:
    """The file's base quality (its header's quality field), which sets the hyper-latent's
    gain only: the map's mean quality over y's positions. On kodim23 (charm.mse, ellipse at
    6 or 7, background 2 or 3) it made files 1.4-2.3 % smaller than the map's highest quality
    and 0.3-1.0 % smaller than its lowest, at the same PSNR within 0.04 dB (docs/roi.md)."""
    return int(round(float(np.dot(qmap.qualities, qmap.share()))))


def parse_range(text: str) -> tuple[float, float]:
    """``"LO,HI"`` -> (LO, HI) for ``--quality-range``."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--quality-range wants two qualities LO,HI, got {text!r}") from None
    return lo, hi
