"""Per-image quality and rate metrics on 8-bit RGB.

Conventions (the ones CompressAI's published Kodak curves use, so our numbers sit beside them):

* PSNR-RGB: one MSE over every pixel and every channel of the uint8 images, peak 255.
* MS-SSIM-RGB: ``pytorch_msssim.ms_ssim`` on the three channels, ``data_range=255``, default
  window (11, sigma 1.5) and the five standard scale weights. Its dB form is
  ``-10 log10(1 - MS-SSIM)``.
* bpp: 8 x (bytes of the whole file) / (width x height).
* LPIPS (v0.1, AlexNet or VGG16) and DISTS: :mod:`liccodec.perceptual`, at full resolution, on
  pixels / 255; their weights come from ``lic perceptual fetch`` (once).

Curve points average the per-image values (mean of PSNRs, not PSNR of the mean MSE).
"""
from __future__ import annotations

import math

import numpy as np

#: MS-SSIM downsamples four times and needs an 11x11 window at the coarsest scale:
#: pytorch_msssim requires the smaller side to be larger than (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected HxWx3 images, got shape {a.shape}")


def mse_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels of two uint8 HxWx3 images."""
    _check_pair(a, b)
    d = a.astype(np.int32) - b.astype(np.int32)  # exact: squares of 8-bit differences fit in int64
    return float(np.mean(np.square(d, dtype=np.int64)))


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB of a mean squared error at the given peak value; ``inf`` for 0."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (peak 255) of two uint8 HxWx3 images; ``inf`` when they are identical."""
    return psnr_from_mse(mse_rgb(a, b))


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two uint8 HxWx3 images, or ``None`` when they are too small for five scales."""
    _check_pair(a, b)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()

    with torch.inference_mode():
        return float(ms_ssim(t(a), t(b), data_range=255, size_average=True).item())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM expressed in dB, ``-10 log10(1 - value)`` (``inf`` at 1)."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def ms_ssim_from_db(db: float) -> float:
    """Inverse of :func:`ms_ssim_db`."""
    return 1.0 - 10.0 ** (-db / 10.0)


def bpp(num_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` holding a ``width`` x ``height`` image."""
    return 8.0 * num_bytes / (width * height)


def lpips_rgb(a: np.ndarray, b: np.ndarray, net: str = "alex") -> float:
    """LPIPS distance of two uint8 HxWx3 images (:func:`liccodec.perceptual.lpips_rgb`)."""
    from liccodec.perceptual.metrics import lpips_rgb as score

    return score(a, b, net)


def dists_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """DISTS distance of two uint8 HxWx3 images (:func:`liccodec.perceptual.dists_rgb`)."""
    from liccodec.perceptual.metrics import dists_rgb as score

    return score(a, b)
