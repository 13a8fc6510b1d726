"""Per-image LPIPS and DISTS of 8-bit RGB images, in the style of :mod:`liccodec.eval.metrics`.

Each image pair is scored at full resolution (no resizing), on the CPU, in float32, with the
pixels mapped to [0, 1] by /255. The models are built once per process and reused.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if (a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8
            or a.ndim != 3 or a.shape[2] != 3):
        raise ValueError(f"expected two uint8 HxWx3 images of one shape, got {a.dtype}{a.shape} "
                         f"and {b.dtype}{b.shape}")


@lru_cache(maxsize=None)
def perceptual_model(name: str):
    """The shared frozen model for ``name``: ``"lpips-alex"``, ``"lpips-vgg"`` or ``"dists"``."""
    from liccodec.perceptual.nets import DISTS, LPIPS

    if name == "dists":
        return DISTS()
    if name.startswith("lpips-"):
        return LPIPS(name.removeprefix("lpips-"))
    raise ValueError(f"unknown perceptual metric {name!r}")


def _score(name: str, a: np.ndarray, b: np.ndarray) -> float:
    import torch

    _check_pair(a, b)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.tensor(x).permute(2, 0, 1)[None].float() / 255  # a copy: x may be read-only

    with torch.inference_mode():
        return float(perceptual_model(name)(t(a), t(b)).item())


def lpips_rgb(a: np.ndarray, b: np.ndarray, net: str = "alex") -> float:
    """LPIPS v0.1 distance of two uint8 HxWx3 images (``net`` = ``"alex"`` or ``"vgg"``)."""
    return _score(f"lpips-{net}", a, b)


def dists_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """DISTS distance of two uint8 HxWx3 images."""
    return _score("dists", a, b)
