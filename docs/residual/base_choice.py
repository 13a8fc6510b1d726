"""Which level the residual layer should build on (docs/residual.md, "Session 30").

For every image of FOLDER, codes charm.mse at qualities 6, 7 and 8, then the residual layer
(liccodec.residual) over each of them at steps of 64 code values down to 2 (every half
quality), and prints the mean curves and the BD-rates (PCHIP, PSNR-RGB and MS-SSIM in dB)
over qualities 1-12 against the classical codecs' normal and high settings in
docs/results/ (Kodak only). The qualities below the base are the model's own points of
docs/results/charm.mse.json.

    python docs/residual/base_choice.py ../shared/data/kodak
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from liccodec import codec, residual
from liccodec.codec import decode_rgb, encode
from liccodec.eval.bdrate import bd_rate
from liccodec.eval.bench import load_images
from liccodec.eval.metrics import ms_ssim_db, ms_ssim_rgb, psnr_rgb

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEPS = [64 * 2 ** (-k / 2) for k in range(11)]  # code values: 64 ... 2


def curves(folder: str) -> dict[int, list[tuple[float, float, float]]]:
    """Per base quality: (bpp, PSNR, MS-SSIM dB), means over the images, for the base
    alone and then for each step."""
    codec.residual_from = lambda spec: spec.quality_max  # the model's own levels up to its top
    sums: dict[int, np.ndarray] = {}
    images = load_images(folder)
    for im in images:
        x, px = im.rgb, im.rgb.shape[0] * im.rgb.shape[1]
        for base in (6, 7, 8):
            data = encode(Image.fromarray(x), quality=base)
            x_hat = decode_rgb(data)[1]
            rows = [(len(data) * 8 / px, psnr_rgb(x_hat, x), ms_ssim_db(ms_ssim_rgb(x_hat, x)))]
            for step in STEPS:
                s = residual.encode(x, x_hat, round(step * residual.STEP_UNIT))
                y = residual.decode(s, x_hat)
                rows.append(((len(data) + len(s)) * 8 / px, psnr_rgb(y, x), ms_ssim_db(ms_ssim_rgb(y, x))))
            sums[base] = sums.get(base, 0) + np.array(rows)
        print(im.name, file=sys.stderr, flush=True)
    return {b: [tuple(r) for r in s / len(images)] for b, s in sums.items()}


def classical(codec: str, metric: int) -> list[tuple[float, float]]:
    rows = [json.loads((RESULTS / d / f"{codec}.json").read_text())["results"] for d in ("", "high")]
    return sorted({(b, p if metric == 1 else ms_ssim_db(m)) for r in rows
                   for b, p, m in zip(r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"])})


def main(folder: str) -> None:
    model = json.loads((RESULTS / "charm.mse.json").read_text())["results"]
    own = [(b, p, ms_ssim_db(m)) for b, p, m in zip(model["bpp"], model["psnr-rgb"], model["ms-ssim-rgb"])]
    for base, curve in curves(folder).items():
        print(f"base {base}: " + "  ".join("%.3f/%.2f/%.2f" % c for c in curve))
        whole = own[: base - 1] + curve  # qualities 1 .. base - 1 are the model's own points
        for name in ("avif-444", "jpeg2000", "webp"):
            bd = [bd_rate(*zip(*classical(name, m)), [w[0] for w in whole], [w[m] for w in whole]) for m in (1, 2)]
            print(f"  vs {name}: PSNR {bd[0]:+.1f}%, MS-SSIM {bd[1]:+.1f}%")


if __name__ == "__main__":
    main(sys.argv[1])
