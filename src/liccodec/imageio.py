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
* Several frames (animated GIF/PNG/WebP, multi-page TIFF): refused (:class:`InputImageError`)
  unless the caller asks for the first frame only (``first_frame=True``, ``--first-frame``):
  frames are never dropped silently. A JPEG's MPO extras (a phone's depth map or preview)
  are not frames: such a JPEG is its primary picture.

Output pixel size always equals input pixel size.

Size: at most :func:`max_pixels` pixels (default 64 Mpx, ``$LICCODEC_MAX_PIXELS``), checked
from the file's header before any pixel is decoded, because coding memory grows with the
image (docs/big-images.md) even where the file is tiny.
"""
from __future__ import annotations

import io
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from liccodec.container import MAX_PIXELS, MAX_SIDE, Mode
from liccodec.errors import FormatError, InputImageError, LicError

if TYPE_CHECKING:  # torch is imported only where tensors are made: decoding runs without it
    from torch import Tensor


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad the bottom/right edges of NCHW ``x`` up to a multiple of ``multiple``."""
    import torch.nn.functional as F

    h, w = x.shape[2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def to_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 HxWx3 -> float (1, 3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1)[None].float().div_(255.0)


def to_padded_array(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """uint8 HxWx3 -> float32 H'xW'x3 in [0, 1], the bottom/right edges replicated up to a
    multiple of ``multiple``: the numpy encoder's input, the numbers of
    ``pad_to_multiple(to_tensor(rgb), multiple)`` in (H, W, C) order."""
    h, w = rgb.shape[:2]
    x = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else x


def to_uint8(x: Tensor) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 HxWx3 (rounded)."""
    import torch

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


#: Largest image (pixels) coded by default: encoding it peaks at about 6.9 GiB with charm.mse
#: (a linear fit through the 24 and 144 Mpx measurements of docs/big-images.md). The format allows 268 Mpx; those need $LICCODEC_MAX_PIXELS and memory.
DEFAULT_MAX_PIXELS = 1 << 26


def max_pixels() -> int:
    """The largest image encoded or decoded: ``$LICCODEC_MAX_PIXELS`` or 64 Mpx (2^26)."""
    v = os.environ.get("LICCODEC_MAX_PIXELS", "")
    if not v:
        return DEFAULT_MAX_PIXELS
    try:
        n = int(float(v))
    except ValueError:
        raise InputImageError(f"LICCODEC_MAX_PIXELS={v!r} is not a number of pixels") from None
    return min(max(n, 1), MAX_PIXELS)


def check_pixels(width: int, height: int, what: str = "image", error: type[LicError] = InputImageError) -> None:
    """Refuse an image over :func:`max_pixels`, naming the limit and how to raise it."""
    limit = max_pixels()
    if width * height > limit:
        raise error(
            f"{what} is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{limit / 1e6:.1f} megapixels: coding it needs about {_gib(width * height):.0f} GiB of memory. "
            f"Set LICCODEC_MAX_PIXELS (at most {MAX_PIXELS}) to allow it (docs/big-images.md)")


def _gib(pixels: int) -> float:
    # encode peak of charm.mse through two measurements (docs/big-images.md): 1.5 GiB + 86 B/px
    return 1.5 + 86 * pixels / (1 << 30)


def frame_count(img: Image.Image) -> int:
    if img.format == "MPO":  # a JPEG with a depth map or preview beside the photo: one picture
        return 1
    try:
        return int(getattr(img, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a broken frame index: Pillow reads frame 1 only anyway
        return 1


def open_image(src: str | Path | bytes | Image.Image, first_frame: bool = False) -> Image.Image:
    """Open and decode an image file (path or bytes); a Pillow image is returned as is.

    The size limit is checked before the pixels are decoded. An input with several frames
    is refused unless ``first_frame`` (then frame 1 is coded, and the caller said so).
    """
    if isinstance(src, Image.Image):  # already in memory; the limit still bounds coding memory
        check_pixels(*src.size, what="the image")
        return src
    name = "<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src)
    try:
        with warnings.catch_warnings():  # our own limit below says it better than Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else src)
        check_pixels(*img.size, what=name)
        frames = frame_count(img)
        if frames > 1 and not first_frame:
            raise InputImageError(
                f"{name} has {frames} frames ({img.format}): liccodec codes one still picture; "
                "pass --first-frame (Python: first_frame=True) to code frame 1 only")
        img.load()
    except FileNotFoundError:
        raise InputImageError(f"no such file: {src}") from None
    except Image.DecompressionBombError as e:
        raise InputImageError(f"{name} is too big for Pillow to open ({e}); liccodec's limit is "
                              f"{max_pixels() / 1e6:.1f} megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
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
