"""Do a grown latent's new channels come alive? (session 26, docs/training-history.md)

charm.m320 (docs/charm.m320.toml) started its 128 new channels at zero: g_a's new outputs
zero, so y's new channels were 0, cost nothing, and step 0 equalled charm.mse. After 7,000
steps they still carried no bits at any level: at zero the rate term holds them (their
scales start at the smallest), and g_s, which sees them rounded to 0, gets no gradient for
them. This runs the same recipe for STEPS steps with the other start, the live one (the recipe
field grow_live = SCALE): g_a's new outputs keep their random initial weights, g_s reads the
new channels through zero weights (so the picture is still charm.mse's at step 0), h_a too,
and h_s's new scales start at SCALE. Then
it prints the bits per pixel in the old and the new channels (EMA weights, float, Kodak 01,
05, 14, 23) at four levels.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python docs/grow_diagnostic.py 1500 1.0

A third argument runs another recipe's grown model the same way, its own [train] table
otherwise (session 27: docs/charm.hi320.toml, whose latent_rate_weights make the new
channels' bits free for the first 600 steps):

    python docs/grow_diagnostic.py 1000 1.0 docs/charm.hi320.toml

The same measurement of exported weights (charm.m320's export, for the zero start), or of a
training checkpoint's EMA weights (session 27's probe of docs/charm.hi320.toml; a model
without charm.m320's 11 levels is measured at its first, middle and last level):

    python docs/grow_diagnostic.py measure <charm.m320.safetensors beside its manifest.json>
    python docs/grow_diagnostic.py measure ../runs/s27/hi320-probe/last.pt
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from liccodec.train.config import Recipe
from liccodec.train.loop import Trainer

M_OLD = 192   # charm.mse's channels; the rest are new


def measure(net: torch.nn.Module) -> None:
    net = net.eval()
    M = net.cfg.M
    images = [torch.from_numpy(np.array(Image.open(f"../shared/data/kodak/kodim{i:02d}.png").convert("RGB")))
              .permute(2, 0, 1)[None].float() / 255 for i in (1, 5, 14, 23)]
    px = sum(x.shape[2] * x.shape[3] for x in images)
    top = len(net.cfg.lambdas) - 1
    for level in (0.0, 5.0, 7.0, 10.0) if top == 10 else (0.0, top / 2, float(top)):
        old = new = z = err = 0.0
        for x in images:
            with torch.no_grad():
                out = net(x, torch.tensor([level]))
            bits = -torch.log2(out.likelihoods["y"])
            old += bits[:, :M_OLD].sum().item()
            new += bits[:, M_OLD:].sum().item()
            z += sum((-torch.log2(v)).sum().item() for k, v in out.likelihoods.items() if k != "y")
            err += ((out.x_hat.clamp(0, 1) - x) ** 2).mean().item() / len(images)
        print(f"level {level:g}: y bits/px in channels 0-{M_OLD - 1} {old / px:.4f}, in {M_OLD}-{M - 1} {new / px:.4f} "
              f"({100 * new / (old + new):.1f}%), all bits/px {(old + new + z) / px:.4f}, PSNR {10 * np.log10(1 / err):.2f} dB (mean MSE)")


def train_live(steps: int, scale: float, recipe: str = "docs/charm.m320.toml") -> torch.nn.Module:
    raw = Recipe.load(recipe).to_dict()
    out = "../runs/s26/grow-live" if recipe == "docs/charm.m320.toml" else f"../runs/grow-live-{Path(recipe).stem}"
    # the live start (TrainConfig.grow_live; session 27 set it up here by hand, the same way)
    raw["train"].update(out=out, steps=steps, warmup=100, decay_start=steps, val_every=0, grow_live=scale)
    trainer = Trainer(Recipe.from_dict(raw))
    trainer.run(progress=False)
    return trainer.ema


if __name__ == "__main__":
    if sys.argv[1] == "measure" and sys.argv[2].endswith(".pt"):
        from liccodec.train.export import model_from_checkpoint

        measure(model_from_checkpoint(sys.argv[2])[0])
    elif sys.argv[1] == "measure":
        from liccodec.train.distill import load_teacher

        measure(load_teacher(sys.argv[2])[0])
    else:
        measure(train_live(int(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:4]))
