"""What a caption buys a ``selic`` model (``lic caption-bench``, docs/models/selic.md).

The encoder never reads the caption, so one encode per image and quality gives the latents
of all three files compared: the file with the image's own caption, the same file without a
caption (charm's decoding exactly: the FiLM blocks are the identity then), and the same file
with another image's caption. The rate of the captioned file includes the caption's bytes.
A gain of "right" over "none" that "wrong" does not share is what the text itself carries;
a gain that "wrong" shares too is the FiLM blocks' bias, which any caption switches on.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from liccodec.errors import UsageError
from liccodec.train.data import read_captions

__all__ = ["bench", "markdown", "read_captions"]

WAYS = ("none", "right", "wrong")


def bench(folder: str | Path, captions: dict[str, str], model: str, qualities: tuple[float, ...],
          limit: int | None = None) -> dict:
    """Per image and quality: bytes without/with the caption and PSNR of the three decodings;
    per quality: their means; and the BD-rate of "right" (caption bytes included) and of
    "wrong" against "none", over the qualities."""
    from liccodec.codec import decode_rgb, encode_planes, with_caption
    from liccodec.eval.bdrate import bd_rate
    from liccodec.eval.metrics import psnr_rgb
    from liccodec.imageio import open_image, split
    from liccodec.train.data import list_images

    paths = [p for p in list_images(folder) if p.name in captions][:limit]
    if len(paths) < 2:
        raise UsageError(f"fewer than two images of {folder} have a caption (a wrong caption needs another)")
    t0 = time.time()
    rows = []
    for i, path in enumerate(paths):
        right = captions[path.name]
        wrong = captions[paths[(i + len(paths) // 2) % len(paths)].name]
        planes = split(open_image(path))
        w, h = planes.size
        for q in qualities:
            enc = encode_planes(planes, model, q, caption=right)
            files = {"none": with_caption(enc.data, None), "right": enc.data, "wrong": with_caption(enc.data, wrong)}
            row = {"image": path.name, "quality": q, "pixels": w * h,
                   "caption_bytes": len(right.encode("utf-8"))}
            for way, data in files.items():
                row[f"bytes_{way}"] = len(data)
                row[f"psnr_{way}"] = psnr_rgb(planes.rgb, decode_rgb(data)[1])
            rows.append(row)
    summary = []
    for q in qualities:
        rs = [r for r in rows if r["quality"] == q]
        s = {"quality": q, "images": len(rs), "caption_bytes": float(np.mean([r["caption_bytes"] for r in rs]))}
        for way in WAYS:
            s[f"bpp_{way}"] = float(np.mean([8 * r[f"bytes_{way}"] / r["pixels"] for r in rs]))
            s[f"psnr_{way}"] = float(np.mean([r[f"psnr_{way}"] for r in rs]))
        summary.append(s)
    bd = {}
    if len(qualities) >= 2:
        anchor = ([s["bpp_none"] for s in summary], [s["psnr_none"] for s in summary])
        for way in ("right", "wrong"):
            bd[way] = bd_rate(*anchor, [s[f"bpp_{way}"] for s in summary], [s[f"psnr_{way}"] for s in summary])
    return {"model": model, "folder": str(folder), "images": len(paths), "rows": rows, "summary": summary,
            "bd_rate_vs_none": bd, "seconds": time.time() - t0}


def markdown(res: dict) -> str:
    lines = [f"{res['model']} on {res['images']} captioned images of {res['folder']}", "",
             "| quality | bpp none | bpp right | caption B | PSNR none | PSNR right | PSNR wrong | "
             "right - none dB | wrong - none dB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in res["summary"]:
        lines.append(f"| {s['quality']:g} | {s['bpp_none']:.4f} | {s['bpp_right']:.4f} | {s['caption_bytes']:.0f} | "
                     f"{s['psnr_none']:.3f} | {s['psnr_right']:.3f} | {s['psnr_wrong']:.3f} | "
                     f"{s['psnr_right'] - s['psnr_none']:+.3f} | {s['psnr_wrong'] - s['psnr_none']:+.3f} |")
    for way, v in res["bd_rate_vs_none"].items():
        lines.append("")
        lines.append(f"BD-rate of {way} captions against none (caption bytes included): "
                     + ("n/a" if v is None else f"{v:+.2f}%"))
    return "\n".join(lines)
