"""Pillow in/out, uint8 HWC <-> float NCHW, padding/cropping, and colour modes.

What is coded, per input mode:

* RGB (8-bit): as is.
* L (greyscale): coded as RGB with R=G=B; decoded back to L (luma of the reconstruction).
* RGBA / LA: colour as above; **alpha is kept, losslessly** (zlib, stream ``alpha``).
* P (palette): expanded to RGB, or RGBA when it has transparency (the palette itself is
  not preserved).
* 16-bit greyscale (I;16, I): coded at 8-bit precision (value >> 8, rounded); decoded to
  16-bit again (x 257). The header records the bit depth.
* 1, CMYK, YCbCr, LAB, HSV: converted to RGB (or L for 1-bit).
* EXIF orientation is applied before coding, so the decoded image is upright.

Output pixel size always equals input pixel size.
"""
from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from liccodec.container import MAX_PIXELS, MAX_SIDE, Mode
from liccodec.errors import FormatError, InputImageError


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad the bottom/right edges of NCHW ``x`` up to a multiple of ``multiple``."""
    h, w = x.shape[2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def to_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 HxWx3 -> float (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1)[None].float().div_(255.0)


def to_uint8(x: Tensor) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 HxWx3 (rounded)."""
    return x[0].clamp(0, 1).mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass
class Planes:
    """An image split into what the codec codes: 8-bit RGB, optional alpha, and its mode."""

    rgb: np.ndarray              # HxWx3 uint8
    alpha: np.ndarray | None     # HxW uint8 (or uint16 for 16-bit modes) or None
    mode: Mode
    bit_depth: int = 8

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def open_image(src: str | Path | bytes | Image.Image) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    try:
        img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
        img.load()
    except FileNotFoundError:
        raise InputImageError(f"no such file: {src}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputImageError(f"cannot read image: {e}") from None
    return img


def split(img: Image.Image) -> Planes:
    """Turn any Pillow image into :class:`Planes` (see the module docstring)."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not stop encoding
        pass
    w, h = img.size
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE) or w * h > MAX_PIXELS:
        raise InputImageError(f"image size {w}x{h} is outside the supported range "
                              f"(sides 1..{MAX_SIDE}, at most {MAX_PIXELS} pixels)")
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img).astype(np.int64)
        if mode == "I" and (a.min() < 0 or a.max() > 65535):
            raise InputImageError("32-bit integer images outside 0..65535 are not supported")
        g8 = np.clip((a + 128) >> 8, 0, 255).astype(np.uint8)
        return Planes(np.repeat(g8[..., None], 3, axis=2), None, Mode.L, 16)
    if mode == "F":
        raise InputImageError("floating-point images are not supported")
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode == "L":
        g = np.asarray(img, dtype=np.uint8)
        return Planes(np.repeat(g[..., None], 3, axis=2), None, Mode.L)
    if mode == "LA":
        a = np.asarray(img, dtype=np.uint8)
        return Planes(np.repeat(a[..., :1], 3, axis=2), a[..., 1].copy(), Mode.LA)
    if mode == "RGBA":
        a = np.asarray(img, dtype=np.uint8)
        return Planes(a[..., :3].copy(), a[..., 3].copy(), Mode.RGBA)
    if mode != "RGB":
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as e:
            raise InputImageError(f"cannot convert mode {mode} to RGB: {e}") from None
    return Planes(np.asarray(img, dtype=np.uint8), None, Mode.RGB)


def merge(rgb: np.ndarray, alpha: np.ndarray | None, mode: Mode, bit_depth: int) -> Image.Image:
    """Inverse of :func:`split` for a decoded RGB plane."""
    if mode in (Mode.L, Mode.LA):
        grey = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
        if bit_depth == 16:
            return Image.fromarray(grey.astype(np.uint16) * 257)  # mode I;16
        if mode == Mode.LA:
            return Image.fromarray(np.stack([grey, alpha], axis=2), "LA")
        return Image.fromarray(grey, "L")
    if mode == Mode.RGBA:
        return Image.fromarray(np.concatenate([rgb, alpha[..., None]], axis=2), "RGBA")
    return Image.fromarray(rgb, "RGB")


def pack_alpha(alpha: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(alpha, dtype=np.uint8).tobytes(), 9)


def unpack_alpha(data: bytes, width: int, height: int) -> np.ndarray:
    n = width * height
    d = zlib.decompressobj()
    try:
        raw = d.decompress(data, n + 1)  # bounded: never inflate more than one plane
    except zlib.error as e:
        raise FormatError(f"alpha stream is corrupt: {e}") from None
    if len(raw) != n or not d.eof or d.unused_data:
        raise FormatError("alpha stream has the wrong size")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
