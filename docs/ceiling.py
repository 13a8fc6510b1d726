"""What bounds the top of a model's range? (session 27, docs/training-history.md)

For each model given (shipped .safetensors beside its manifest, or a training checkpoint
.pt, EMA weights), in float on Kodak 01, 05, 14 and 23, mean MSE over the four:

* the transforms' ceiling: the PSNR of g_s(y) with y left unrounded (and the latent
  residual prediction off) at the lowest and the highest level's gains;
* the coded top: PSNR and estimated bits per pixel at the highest level, y rounded;
* with ``--mask-from C``, the coded top again with g_s's hidden channels C and up set to zero
  after each of its transposed convolutions: what a grown synthesis' new channels carry;
* with ``--optimise-y STEPS``, the synthesis' own ceiling instead, image by image: starting
  from the unrounded y that g_s sees at the top level, STEPS steps of Adam (step size 0.02)
  on y alone to minimise g_s's squared error. What it gains over g_a's y is what a better
  encoder could give at that synthesis (about 1 s a step for a Kodak image, 1 thread).

    python docs/ceiling.py models/charm.mse.safetensors ../runs/charm.hi/last.pt
    python docs/ceiling.py --mask-from 128 ../runs/charm.gs192/last.pt
    python docs/ceiling.py --optimise-y 150 --images 1,23 models/charm.mse.safetensors
"""
import argparse

import numpy as np
import torch
from PIL import Image

import liccodec.latent.channelwise as channelwise

IMAGES = "1,5,14,23"


def load(path: str) -> torch.nn.Module:
    if path.endswith(".pt"):
        from liccodec.train.export import model_from_checkpoint

        return model_from_checkpoint(path)[0]
    from liccodec.train.distill import load_teacher

    return load_teacher(path)[0].eval()


def run(net, images, level: float) -> tuple[float, float]:
    """(PSNR of the mean MSE, bits per pixel from the likelihoods)."""
    err = bits = px = 0.0
    for x in images:
        with torch.no_grad():
            out = net(x, torch.tensor([level]))
        err += ((out.x_hat.clamp(0, 1) - x) ** 2).mean().item() / len(images)
        bits += sum(-torch.log2(v).sum().item() for v in out.likelihoods.values())
        px += x.shape[2] * x.shape[3]
    return 10 * np.log10(1 / err), bits / px


def optimise_y(net, x: torch.Tensor, level: float, steps: int) -> tuple[float, float]:
    """(PSNR of g_s at the unrounded y_hat of ``level``, PSNR after ``steps`` of Adam on it)."""
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        y = net(x, torch.tensor([level])).y_hat
        start = ((net.g_s(y).clamp(0, 1) - x) ** 2).mean().item()
    y = y.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=0.02)
    for _ in range(steps):
        loss = ((net.g_s(y) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = ((net.g_s(y).clamp(0, 1) - x) ** 2).mean().item()
    return 10 * np.log10(1 / start), 10 * np.log10(1 / end)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--mask-from", type=int, default=0)
    ap.add_argument("--optimise-y", type=int, default=0, metavar="STEPS")
    ap.add_argument("--images", default=IMAGES, help="Kodak numbers, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(1)
    numbers = [int(i) for i in args.images.split(",")]
    images = [torch.from_numpy(np.array(Image.open(f"../shared/data/kodak/kodim{i:02d}.png").convert("RGB")))
              .permute(2, 0, 1)[None].float() / 255 for i in numbers]
    rounded = channelwise._quantize_y
    for path in args.models:
        net = load(path)
        top = float(len(net.cfg.lambdas) - 1)
        if args.optimise_y:
            channelwise._quantize_y = lambda y, scales, means, training: (torch.ones_like(y), y)
            net.latent.lrp = None
            for i, x in zip(numbers, images):
                before, after = optimise_y(net, x, top, args.optimise_y)
                print(f"{path}: kodim{i:02d}, g_s at the unrounded y of level {top:g}: {before:.2f} dB; "
                      f"y optimised for g_s ({args.optimise_y} steps): {after:.2f} dB")
            channelwise._quantize_y = rounded
            continue
        psnr, bpp = run(net, images, top)
        line = f"{path}: top (level {top:g}) coded {psnr:.2f} dB at {bpp:.3f} bpp"
        if args.mask_from:
            masked = {"on": True}

            def cut(module, inputs, out):
                if not masked["on"]:
                    return out
                out = out.clone()
                out[:, args.mask_from:] = 0
                return out

            hooks = [layer.register_forward_hook(cut) for layer in list(net.g_s)[:-1]
                     if isinstance(layer, torch.nn.ConvTranspose2d)]
            line += f"; channels {args.mask_from}+ of g_s zeroed {run(net, images, top)[0]:.2f} dB"
            for h in hooks:
                h.remove()
        channelwise._quantize_y = lambda y, scales, means, training: (torch.ones_like(y), y)
        lrp, net.latent.lrp = net.latent.lrp, None
        try:
            low, high = run(net, images, 0.0)[0], run(net, images, top)[0]
        finally:
            channelwise._quantize_y, net.latent.lrp = rounded, lrp
        print(f"{line}; y unrounded: {low:.2f} dB at level 0, {high:.2f} dB at level {top:g}")


if __name__ == "__main__":
    main()
