"""Rebuild a resumable-format checkpoint (recipe, state, EMA weights) from a GPU run's pack.

  python .gpu/unpack.py NAME PACKDIR META.json OUTDIR
"""
import json
import lzma
import sys
from pathlib import Path

import torch
from safetensors.torch import load as st_load

from liccodec.models import get_arch
from liccodec.train.config import Recipe
from liccodec.train.warmstart import warm_start

LOCAL_INIT = {"charm.mse.safetensors": "models/charm.mse.safetensors",
              "asym.stage1.safetensors": "../runs/asym.models/asym.stage1.safetensors"}

name, packdir, metaf, outdir = sys.argv[1:5]
meta = json.loads(Path(metaf).read_text())
parts = sorted(Path(packdir).glob(f"{name}.pack.xz.*"), key=lambda p: int(p.suffix[1:]))
blob = b"".join(p.read_bytes() for p in parts)
packed = st_load(lzma.decompress(blob))
rd = meta["recipe"]
rd["train"]["init"] = LOCAL_INIT[Path(rd["train"]["init"]).name]
recipe = Recipe.from_dict(rd)
m = get_arch(recipe.arch).build(**recipe.model)
fresh = set(warm_start(m, recipe.train.init, tuple(recipe.train.reinit)))
ref = m.state_dict()
ema = {}
for key, v in packed.items():
    kind, k = key.split("/", 1)
    if kind == "d":
        ema[k] = (ref[k].float() + v.float()).to(ref[k].dtype)
    else:
        ema[k] = v.to(ref[k].dtype) if k in ref else v
missing = set(ref) - set(ema)
assert not missing, missing
m.load_state_dict(ema)
out = Path(outdir)
out.mkdir(parents=True, exist_ok=True)
rd["train"]["data"] = "../shared/data/train"   # 516 of its 651 training photos, as JPEG q95 4:4:4
rd["train"]["holdout"] = 10
ck = {"recipe": rd, "state": meta["state"], "ema": m.state_dict(), "model": m.state_dict()}
torch.save(ck, out / "last.pt")
print(name, "step", meta["state"]["step"], "of", meta["steps_planned"], "cut" if meta["cut"] else "", "->", out / "last.pt")
