"""Side-by-side crops at equal rate: what a reader should look at before trusting a metric.

For one image, each liccodec model codes it at one quality; the first model's file sets the
target rate, and every classical codec is set to the largest file that does not exceed it
(bisection over its integer setting, so the classical codec never gets more bits). The
crops (the original's and each reconstruction's, same box, magnified without smoothing) go to
PNG files, and a markdown table gives every codec's bpp, PSNR and perceptual distances on the
whole image.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from liccodec.eval.classical import Codec
from liccodec.eval.metrics import bpp as bits_per_pixel
from liccodec.eval.metrics import psnr_rgb


@dataclass
class Coded:
    name: str
    setting: float
    bpp: float
    rgb: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)


def code(codec: Codec, rgb: np.ndarray, setting: float) -> Coded:
    data = codec.encode(Image.fromarray(rgb), setting)
    rec = np.asarray(codec.decode(data).convert("RGB"))
    h, w = rgb.shape[:2]
    return Coded(codec.name, setting, bits_per_pixel(len(data), w, h), rec)


def match_rate(codec: Codec, rgb: np.ndarray, target_bpp: float) -> Coded:
    """The codec at the integer setting whose file is the largest not above ``target_bpp``
    (its smallest file if even that is larger). Assumes the rate is monotone in the setting."""
    lo, hi = int(min(codec.settings)), int(max(codec.settings))
    up = code(codec, rgb, hi).bpp > code(codec, rgb, lo).bpp  # does the rate grow with the setting?
    small, big = (lo, hi) if up else (hi, lo)
    best = code(codec, rgb, small)
    if best.bpp > target_bpp:
        return best
    while abs(big - small) > 1:
        mid = (small + big) // 2
        c = code(codec, rgb, mid)
        if c.bpp <= target_bpp:
            small, best = mid, c
        else:
            big = mid
    top = code(codec, rgb, big)
    return top if top.bpp <= target_bpp else best


def side_by_side(rgb: np.ndarray, learned: Sequence[Codec], quality: float, classical: Sequence[Codec],
                 box: tuple[int, int, int, int], out_dir: Path, stem: str, metrics: Sequence[str] = (),
                 zoom: int = 2) -> str:
    """Code ``rgb`` with every codec, write the crops, return the markdown section."""
    from liccodec.eval.bench import perceptual_scorers

    scorers = perceptual_scorers(metrics)
    coded = [code(c, rgb, quality) for c in learned]
    target = coded[0].bpp
    coded += [match_rate(c, rgb, target) for c in classical]
    for c in coded:
        c.scores = {"PSNR-RGB": psnr_rgb(rgb, c.rgb), **{k: f(rgb, c.rgb) for k, f in scorers.items()}}
    x, y, w, h = box
    out_dir.mkdir(parents=True, exist_ok=True)

    def save(img: np.ndarray, name: str) -> str:
        crop = Image.fromarray(np.ascontiguousarray(img[y:y + h, x:x + w]))
        crop = crop.resize((w * zoom, h * zoom), Image.Resampling.NEAREST)
        path = out_dir / f"{stem}-{name}.png"
        crop.save(path)
        return path.name

    cells = [("original", save(rgb, "original"))] + [(f"{c.name} ({c.bpp:.3f} bpp)", save(c.rgb, c.name))
                                                     for c in coded]
    keys = list(coded[0].scores)
    lines = [f"### {stem}: crop ({x}, {y}) {w}x{h}, shown {zoom}x\n",
             "| " + " | ".join(n for n, _ in cells) + " |", "|" + "---|" * len(cells),
             "| " + " | ".join(f"![{n}]({f})" for n, f in cells) + " |", "",
             "| codec | setting | bpp | " + " | ".join(keys) + " |",
             "|---|---:|---:|" + "---:|" * len(keys)]
    for c in coded:
        lines.append(f"| {c.name} | {c.setting:g} | {c.bpp:.4f} | "
                     + " | ".join(f"{c.scores[k]:.2f}" if k == "PSNR-RGB" else f"{c.scores[k]:.4f}" for k in keys)
                     + " |")
    return "\n".join(lines) + "\n"
