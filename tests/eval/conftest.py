"""Fixtures for the evaluation tests: small synthetic images and the optional shared data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: ``shared/`` sits beside the checkout (``../shared`` from the repository root).
SHARED = Path(__file__).resolve().parents[3] / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def anchors_dir(shared_dir: Path) -> Path:
    d = shared_dir / "anchors"
    if not (d / "compressai_kodak" / "vtm.json").is_file():
        pytest.skip("published anchors are not present")
    return d


def synthetic_rgb(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients, an edge, and mild noise (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 90 * np.sin(x / 11.0) * np.cos(y / 17.0)
    g = 60 + 120 * (x / width) + 40 * (y > height / 2)
    b = 200 - 150 * (y / height) + 20 * np.sin((x + y) / 5.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 4, (height, width, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture
def tiny_rgb() -> np.ndarray:
    return synthetic_rgb()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two small PNGs in a folder, as ``lic eval`` takes them."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_rgb(seed=i)).save(folder / f"img{i}.png")
    return folder
