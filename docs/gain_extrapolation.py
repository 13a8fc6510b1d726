"""Qualities below the lowest level: how y's gains are extrapolated (session 29).

Estimates, in float, the bits per pixel (from the model's likelihoods) and the PSNR of a
model's training forward at levels 1, 0, -0.5 and -1 (qualities 2, 1, 0.5 and 0) on every
third Kodak image, with y's gains extrapolated below level 0 geometrically (what liccodec
ships) or linearly. The hyper-gains are linear in both, as in the decoder's integers.

    python docs/gain_extrapolation.py [models/charm.mse.safetensors]

Session 29 (Zen 5 EPYC, 2 threads): level -1 gave 0.0854 bpp at 25.41 dB geometric and
0.0678 bpp at 23.74 dB linear; levels 0 and 1 give 0.1377 bpp at 26.77 dB and 0.2256 bpp at
28.38 dB (docs/format.md, "Below the lowest level").
"""
import glob
import sys

import numpy as np
import torch
from PIL import Image

from liccodec.train.distill import load_teacher


def main(path: str = "models/charm.mse.safetensors") -> None:
    torch.set_num_threads(2)
    net = load_teacher(path)[0].eval()
    images = sorted(glob.glob("../shared/data/kodak/*.png"))[::3]
    for rule in ("geometric", "linear"):
        net.latent.gain.below = rule
        for level in (1.0, 0.0, -0.5, -1.0):
            bpp = psnr = 0.0
            for p in images:
                x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
                with torch.no_grad():
                    out = net(x, torch.tensor([level]))
                bits = sum((-torch.log2(lk.clamp_min(1e-9))).sum().item() for lk in out.likelihoods.values())
                bpp += bits / (x.shape[2] * x.shape[3])
                psnr += 10 * np.log10(1 / ((out.x_hat.clamp(0, 1) - x) ** 2).mean().item())
            print(f"{rule:9} level {level:+.1f}: {bpp / len(images):.4f} bpp, {psnr / len(images):.2f} dB", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
