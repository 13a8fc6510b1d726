"""Rate-estimate BD-rate of trained checkpoints (EMA weights, float networks, no files):
for models whose real-file evaluation is too slow here (weconv's exact band networks)."""
import json
import sys

import numpy as np
import torch

from liccodec.eval.bdrate import bd_rate
from liccodec.imageio import pad_to_multiple, to_tensor
from liccodec.train.data import list_images, load_rgb, split_holdout
from liccodec.train.export import model_from_checkpoint

torch.set_num_threads(2)
sets = {"kodak": list_images("../shared/data/kodak"),
        "holdout": split_holdout(list_images("../shared/data/train"), 10)[1][:24]}
out = {}
for name in sys.argv[1:]:
    model = model_from_checkpoint(f"../runs/gpu/run.{name}/last.pt")[0]
    levels = torch.arange(model.cfg.levels, dtype=torch.float32)
    for s, paths in sets.items():
        bpp = np.zeros(len(levels)); ps = np.zeros(len(levels))
        for p in paths:
            x = to_tensor(load_rgb(p))
            h, w = x.shape[2:]
            xp = pad_to_multiple(x, model.downsampling).expand(len(levels), -1, -1, -1).contiguous()
            with torch.no_grad():
                o = model(xp, levels)
            bits = sum((-torch.log2(l.float())).flatten(1).sum(1) for l in o.likelihoods.values())
            bpp += (bits / (h * w)).numpy() / len(paths)
            mse = (o.x_hat.float()[:, :, :h, :w].clamp(0, 1) - x).pow(2).flatten(1).mean(1)
            ps += (10 * torch.log10(1 / mse)).numpy() / len(paths)
        out.setdefault(name, {})[s] = {"bpp": bpp.tolist(), "psnr": ps.tolist()}
        print(name, s, np.round(bpp, 3).tolist(), np.round(ps, 2).tolist(), flush=True)
json.dump(out, open("../runs/gpu/est_" + "_".join(sys.argv[1:]) + ".json", "w"), indent=1)
