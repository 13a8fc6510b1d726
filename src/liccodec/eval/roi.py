"""Region-of-interest coding measured (``lic roi-bench``, docs/roi.md): PSNR inside and outside
the region, ROI coding against one uniform quality at the same file size.

Per image and (ROI quality, background quality) pair: the ROI file; the uniform file of the
same size, found by rate control (``ratecontrol.encode_to_target`` with the ROI file's size:
the largest quality whose file is not larger, closed to a thousandth of quality); and, for
reference, the uniform file at the ROI quality. All three are real files, decoded by the
decoder ``lic decode`` runs; PSNR is over the image's pixels inside or outside the mask
(not the latent grid), RGB, peak 255.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) of two uint8 HxWx3 images over the pixels where ``mask`` (HxW bool)."""
    if not mask.any():
        return float("nan")
    err = (a.astype(np.float64) - b.astype(np.float64))[mask]
    mse = float(np.mean(err * err))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def central_ellipse(width: int, height: int) -> np.ndarray:
    """(height, width) bool: the ellipse inscribed in the image's central half (axes W/2 and
    H/2, about 20 % of the pixels), the default region of ``lic roi-bench``."""
    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).ellipse([width / 4, height / 4, 3 * width / 4 - 1, 3 * height / 4 - 1], fill=255)
    return np.asarray(img) >= 128


def compare(path: str | Path, model: str, pairs: list[tuple[float, float]], mask: np.ndarray | None = None
            ) -> list[dict]:
    """One row per (ROI quality, background quality) pair for the image at ``path``."""
    from liccodec.codec import analyse, decode_rgb, encode_analysis
    from liccodec.eval.metrics import psnr_rgb
    from liccodec.imageio import open_image, split
    from liccodec.ratecontrol import Target, encode_to_target
    from liccodec.roi import request
    from liccodec.weights import get_spec

    planes = split(open_image(path))
    w, h = planes.size
    mask = central_ellipse(w, h) if mask is None else mask
    spec = get_spec(model)
    t0 = time.time()
    an = analyse(planes, model)

    def measured(data: bytes) -> dict:
        _, rgb, _ = decode_rgb(data)
        return {"bytes": len(data), "bpp": round(8 * len(data) / (w * h), 4),
                "psnr_roi": round(masked_psnr(planes.rgb, rgb, mask), 3),
                "psnr_outside": round(masked_psnr(planes.rgb, rgb, ~mask), 3),
                "psnr": round(psnr_rgb(planes.rgb, rgb), 3)}

    rows = []
    for q_roi, q_bg in pairs:
        region = request(spec, planes.size, q_roi, mask, q_bg)
        enc = encode_analysis(an, region.high, region)
        uniform = encode_to_target(an, Target("size", len(enc.data)), model)
        reference = encode_analysis(an, region.high)
        rows.append({"image": Path(path).name, "model": model, "roi_quality": q_roi, "background_quality": q_bg,
                     "roi_pixels": round(float(mask.mean()), 4),
                     "base_quality": enc.header.quality / 1000,
                     "roi": measured(enc.data),
                     "uniform": {"quality": uniform.q_milli / 1000, **measured(uniform.data)},
                     "uniform_at_roi_quality": measured(reference.data)})
    rows[-1]["seconds"] = round(time.time() - t0, 1)
    return rows


def markdown(rows: list[dict]) -> str:
    """The table of docs/roi.md."""
    out = ["| image | ROI / background q | bytes | PSNR ROI | PSNR outside | PSNR all "
           "| uniform q (same size) | bytes | PSNR ROI | PSNR outside | PSNR all | ROI gain | outside loss "
           "| PSNR ROI at uniform ROI q |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a, u, ref = r["roi"], r["uniform"], r["uniform_at_roi_quality"]
        out.append(f"| {r['image']} | {r['roi_quality']:g} / {r['background_quality']:g} | {a['bytes']:,} "
                   f"| {a['psnr_roi']:.2f} | {a['psnr_outside']:.2f} | {a['psnr']:.2f} "
                   f"| {u['quality']:g} | {u['bytes']:,} | {u['psnr_roi']:.2f} | {u['psnr_outside']:.2f} "
                   f"| {u['psnr']:.2f} | {a['psnr_roi'] - u['psnr_roi']:+.2f} "
                   f"| {a['psnr_outside'] - u['psnr_outside']:+.2f} | {ref['psnr_roi']:.2f} |")
    return "\n".join(out)
