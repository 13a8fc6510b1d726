"""Measure codecs on a folder of images: rate, PSNR, MS-SSIM and encode/decode times.

For every codec, setting and image: encode the image in memory, time it; decode the bytes, time
that (until the pixels are in memory); score the reconstruction against the original. Before the
first timed call, each codec encodes and decodes one image untimed so that one-off costs
(loading weights, initialising libraries) are not charged to the first image.

Everything runs in this process, one image at a time, on ``threads`` threads (the codec's
own option, ``torch.set_num_threads`` and numpy's BLAS), so numbers from one run compare fairly
with each other.
"""
from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from liccodec.eval.classical import Codec
from liccodec.eval.metrics import bpp as bits_per_pixel
from liccodec.eval.metrics import ms_ssim_rgb, psnr_rgb
from liccodec.eval.results import RDCurve

IMAGE_SUFFIXES = (".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class EvalImage:
    """One test image as 8-bit RGB."""

    name: str
    rgb: np.ndarray  # HxWx3 uint8

    @property
    def pixels(self) -> int:
        return int(self.rgb.shape[0] * self.rgb.shape[1])

    def pil(self) -> Image.Image:
        # A fresh image without metadata, so no encoder copies an ICC profile or EXIF into its file.
        return Image.fromarray(self.rgb, "RGB")


def find_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(folder: str | Path, limit: int | None = None, holdout: int = 0) -> list[EvalImage]:
    """The first ``limit`` images of ``folder`` (all when ``None``), converted to RGB; with
    ``holdout`` = K only those a training run with ``holdout = K`` kept out (every K-th)."""
    files = find_images(folder)
    if holdout:
        from liccodec.train.data import split_holdout

        files = split_holdout(files, holdout)[1]
    if limit is not None:
        files = files[:limit]
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(EvalImage(f.stem, np.asarray(im.convert("RGB")).copy()))
    return out


@contextlib.contextmanager
def threads_limited(n: int) -> Iterator[None]:
    """Run with at most ``n`` intra-op threads in torch (when installed) and in numpy's
    BLAS, which the numpy coders run on and torch.set_num_threads does not reach; restore
    both afterwards."""
    from liccodec.runtime import blas

    old_blas = blas.get_threads()
    blas.set_threads(n)
    try:
        import torch
    except ImportError:
        torch = None
    old = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch:
            torch.set_num_threads(old)
        if old_blas is not None:
            blas.set_threads(old_blas)


@dataclass
class Point:
    """One codec at one setting on one image."""

    bpp: float
    psnr: float
    ms_ssim: float | None
    encoding_time: float
    decoding_time: float
    extra: dict[str, float] = field(default_factory=dict)   # perceptual distances by key


Scorer = Callable[[np.ndarray, np.ndarray], float]


def perceptual_scorers(keys: Sequence[str]) -> dict[str, Scorer]:
    """Scoring functions of the perceptual distances ``keys`` (:data:`PERCEPTUAL_KEYS`)."""
    from liccodec.perceptual import dists_rgb, lpips_rgb

    table: dict[str, Scorer] = {"lpips-alex": lambda a, b: lpips_rgb(a, b, "alex"),
                                "lpips-vgg": lambda a, b: lpips_rgb(a, b, "vgg"), "dists": dists_rgb}
    unknown = [k for k in keys if k not in table]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(table)}")
    return {k: table[k] for k in keys}


def measure(codec: Codec, image: EvalImage, setting: float,
            scorers: dict[str, Scorer] | None = None) -> Point:
    """Encode, decode and score one image at one setting (plus the perceptual ``scorers``)."""
    src = image.pil()
    t0 = time.perf_counter()
    data = codec.encode(src, setting)
    t1 = time.perf_counter()
    rec = np.asarray(codec.decode(data))
    t2 = time.perf_counter()
    if rec.shape != image.rgb.shape or rec.dtype != np.uint8:
        raise RuntimeError(f"{codec.name} decoded {image.name} at {setting} to {rec.shape} "
                           f"{rec.dtype}, expected {image.rgb.shape} uint8")
    h, w = image.rgb.shape[:2]
    return Point(bits_per_pixel(len(data), w, h), psnr_rgb(image.rgb, rec),
                 ms_ssim_rgb(image.rgb, rec), t1 - t0, t2 - t1,
                 {k: f(image.rgb, rec) for k, f in (scorers or {}).items()})


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    m = float(np.mean(vals))
    return m if math.isfinite(m) else None


ProgressFn = Callable[[int], None]


def evaluate(codec: Codec, images: Sequence[EvalImage], *, threads: int = 1,
             progress: ProgressFn | None = None, run: dict | None = None,
             metrics: Sequence[str] = ()) -> RDCurve:
    """Measure ``codec`` at all its settings on ``images``; one curve point per setting.
    ``metrics``: perceptual distances to add (:data:`~liccodec.eval.results.PERCEPTUAL_KEYS`).

    ``progress(n)`` is called after each (setting, image) with ``n=1``; ``run`` is stored in the
    curve's ``meta["run"]`` (the command line, the time, an id shared by one ``lic eval``).
    """
    if not images:
        raise ValueError("no images to evaluate on")
    settings = list(codec.settings)
    scorers = perceptual_scorers(metrics)
    table: dict[str, list[Point]] = {im.name: [] for im in images}
    started = time.perf_counter()
    with threads_limited(threads):
        codec.decode(codec.encode(images[0].pil(), settings[len(settings) // 2]))  # warm-up
        for s in settings:
            for im in images:
                table[im.name].append(measure(codec, im, s, scorers))
                if progress:
                    progress(1)
    elapsed = time.perf_counter() - started

    keys = {"bpp": "bpp", "psnr-rgb": "psnr", "ms-ssim-rgb": "ms_ssim",
            "encoding_time": "encoding_time", "decoding_time": "decoding_time"}
    per_image = {name: {**{k: [getattr(p, attr) for p in pts] for k, attr in keys.items()},
                        **{k: [p.extra[k] for p in pts] for k in scorers}}
                 for name, pts in table.items()}

    def column(attr: str) -> list[float | None]:
        return [_mean([getattr(table[im.name][i], attr) for im in images]) for i in range(len(settings))]

    meta = codec.meta()
    meta.update({"source": "measured",
                 "images": {"count": len(images), "names": [im.name for im in images],
                            "megapixels": [round(im.pixels / 1e6, 6) for im in images]},
                 "aggregation": "mean over images of per-image bpp, PSNR, MS-SSIM, "
                                f"{''.join(k + ', ' for k in scorers)}and seconds",
                 "elapsed_s": round(elapsed, 3),
                 "run": dict(run or {})})
    bpp_col = column("bpp")
    return RDCurve(name=codec.label or codec.name,
                   bpp=[float(b) for b in bpp_col if b is not None],
                   psnr=column("psnr"), ms_ssim=column("ms_ssim"),
                   encoding_time=column("encoding_time"), decoding_time=column("decoding_time"),
                   description=f"{codec.version()}; {codec.describe()}", source="measured",
                   kind=codec.kind, meta=meta, per_image=per_image,
                   extra={k: [_mean([table[im.name][i].extra[k] for im in images]) for i in range(len(settings))]
                          for k in scorers})


def new_run(command: str) -> dict[str, str]:
    """Identity of one evaluation run, stored in each of its results files."""
    return {"id": uuid.uuid4().hex[:12], "command": command,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
