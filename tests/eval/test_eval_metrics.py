"""PSNR / MS-SSIM conventions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from liccodec.eval.metrics import bpp, ms_ssim_db, ms_ssim_from_db, ms_ssim_rgb, psnr_rgb


def test_psnr_known_mse(tiny_rgb: np.ndarray) -> None:
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[..., 0] += 3  # one channel off by 3: MSE = 9 / 3 = 3
    assert psnr_rgb(a, b) == pytest.approx(10 * math.log10(255**2 / 3))
    assert psnr_rgb(tiny_rgb, tiny_rgb) == math.inf


def test_psnr_no_uint8_wraparound() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    assert psnr_rgb(a, b) == pytest.approx(0.0)


def test_inputs_checked() -> None:
    with pytest.raises(ValueError):
        psnr_rgb(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError):
        psnr_rgb(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32))


def test_ms_ssim() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (176, 176, 3), dtype=np.uint8)
    assert ms_ssim_rgb(a, a) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert 0.5 < ms_ssim_rgb(a, noisy) < 1.0
    assert ms_ssim_rgb(a[:100], a[:100]) is None  # too small for five scales


def test_db_conversions() -> None:
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_from_db(ms_ssim_db(0.987)) == pytest.approx(0.987)
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
