"""Training data: a folder of images decoded once into memory, random crops and flips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def split_holdout(paths: list[Path], every: int) -> tuple[list[Path], list[Path]]:
    """(training, held out): every ``every``-th image of the sorted list, starting with the
    first, is held out for validation on photos a model has not seen; 0 holds out none."""
    if every <= 0:
        return list(paths), []
    return ([p for i, p in enumerate(paths) if i % every],
            [p for i, p in enumerate(paths) if i % every == 0])


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class CropSampler:
    """Uniform random crops from images held in memory as uint8.

    All randomness comes from one numpy Generator whose state is saved in checkpoints, so
    a resumed run draws the same crops as an uninterrupted one.
    """

    def __init__(self, folder: str | Path, seed: int, min_side: int = 0, limit: int | None = None,
                 holdout: int = 0):
        paths = split_holdout(list_images(folder), holdout)[0][:limit]
        self.images = [a for a in map(load_rgb, paths) if min(a.shape[:2]) >= min_side]
        if not self.images:
            raise ValueError(f"no usable images in {folder}")
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, n: int, patch: int) -> torch.Tensor:
        out = np.empty((n, patch, patch, 3), dtype=np.uint8)
        for i in range(n):
            img = self.images[self.rng.integers(len(self.images))]
            h, w = img.shape[:2]
            if h < patch or w < patch:  # upsample-free fallback: reflect-pad small images
                img = np.pad(img, ((0, max(0, patch - h)), (0, max(0, patch - w)), (0, 0)), mode="reflect")
                h, w = img.shape[:2]
            top = self.rng.integers(h - patch + 1)
            left = self.rng.integers(w - patch + 1)
            crop = img[top:top + patch, left:left + patch]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            out[i] = crop
        x = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
