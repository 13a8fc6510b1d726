"""Training data: a folder of images decoded once into memory, random crops and flips."""
from __future__ import annotations

import json
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


def read_captions(path: str | Path, group: str | None = None) -> dict[str, str]:
    """A captions file (``docs/data/captions-*.json``) as file name -> caption: a JSON object
    of file name -> caption, or of groups of those (``{"train": {...}, "holdout": {...}}``),
    merged, or only ``group``; a key starting with ``_`` holding a string is a note."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of file name -> caption")
    if group is not None:
        if not isinstance(raw.get(group), dict):
            raise ValueError(f"{path} has no group {group!r} of captions")
        raw = raw[group]
    out = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            out.update({str(a): str(b) for a, b in v.items()})
        elif not k.startswith("_"):
            out[str(k)] = str(v)
    return out


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class CropSampler:
    """Uniform random crops from images held in memory as uint8.

    All randomness comes from one numpy Generator whose state is saved in checkpoints, so
    a resumed run draws the same crops as an uninterrupted one.

    With ``captions`` (file name -> caption) only the captioned photos are sampled, and
    :meth:`captioned_batch` hands each crop's caption along (a selic model's training).
    """

    def __init__(self, folder: str | Path, seed: int, min_side: int = 0, limit: int | None = None,
                 holdout: int = 0, captions: dict[str, str] | None = None):
        paths = split_holdout(list_images(folder), holdout)[0]
        if captions is not None:
            paths = [p for p in paths if p.name in captions]
        loaded = [(p, load_rgb(p)) for p in paths[:limit]]
        loaded = [(p, a) for p, a in loaded if min(a.shape[:2]) >= min_side]
        self.images = [a for _, a in loaded]
        self.captions = None if captions is None else [captions[p.name] for p, _ in loaded]
        if not self.images:
            raise ValueError(f"no usable {'captioned ' if captions is not None else ''}images in {folder}")
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, n: int, patch: int) -> torch.Tensor:
        return self._draw(n, patch)[0]

    def captioned_batch(self, n: int, patch: int) -> tuple[torch.Tensor, list[str]]:
        """A batch and the caption of each crop's photo (the same draws as :meth:`batch`)."""
        if self.captions is None:
            raise ValueError("this sampler was built without captions")
        x, which = self._draw(n, patch)
        return x, [self.captions[k] for k in which]

    def _draw(self, n: int, patch: int) -> tuple[torch.Tensor, list[int]]:
        out = np.empty((n, patch, patch, 3), dtype=np.uint8)
        which = []
        for i in range(n):
            which.append(int(self.rng.integers(len(self.images))))
            img = self.images[which[-1]]
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
        return x.contiguous(memory_format=torch.channels_last), which

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
