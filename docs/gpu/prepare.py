"""Build the git-ignored folder .gpu/ that a lent GPU machine trains from (session 20).

What the device tool sends is capped at 64 MiB (tracked files plus carried ones) and the
machine reaches no package index, so this packs what a training needs, small:

* data/: the training photos minus the hold-out (every 10th, as `holdout = 10`), JPEG q95
  4:4:4, in a seeded random order until 44 MB (516 of 651 in session 20). The lossless
  corpus is 155 MB; q95 re-encoding keeps about 44 dB and most sources were JPEGs already.
* init/: charm.mse's weights, xz-compressed, and asym stage 1's tensors that differ from them.
* site/compressai/: compressai's pure-Python entropy_models and ops, copied from the
  installed package at preparation time (it has no cp312 wheel for that machine's Python),
  with stubs for its two C++ modules, which training does not call.
* wheels/: constriction and pytorch-msssim for Python 3.12.
* the two session scripts, gpu_train.py and unpack.py, and the recipes.

Run from the repository root: python docs/gpu/prepare.py. Then, for the device call, take
models/*.safetensors, docs/ and tests/ out of the index for its duration (git rm --cached,
and ignore them in .git/info/exclude; `git reset` restores them) and carry .gpu.
"""
import lzma
import random
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from liccodec.train.data import list_images, split_holdout

G = Path(".gpu")
DOC = Path("docs/gpu")


def data(budget: float = 44.0e6) -> None:
    (G / "data").mkdir(parents=True, exist_ok=True)
    train, _ = split_holdout(list_images("../shared/data/train"), 10)
    random.Random(21).shuffle(train)
    total = 0
    for p in train:
        out = G / "data" / (p.stem + ".jpg")
        Image.open(p).convert("RGB").save(out, quality=95, subsampling=0)
        if total + out.stat().st_size > budget:
            out.unlink()
            continue
        total += out.stat().st_size
    print(f"data: {len(list((G / 'data').iterdir()))} photos, {total / 1e6:.1f} MB")


def init() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    (G / "init").mkdir(parents=True, exist_ok=True)
    src = Path("models/charm.mse.safetensors").read_bytes()
    (G / "init" / "charm.mse.safetensors.xz").write_bytes(lzma.compress(src, preset=6))
    stage1 = Path("../runs/asym.models/asym.stage1.safetensors")   # lic export of docs/asym.stage1.toml's run
    if stage1.exists():
        a, b = load_file("models/charm.mse.safetensors"), load_file(str(stage1))
        diff = {k: v for k, v in b.items()
                if k not in a or a[k].shape != v.shape or a[k].dtype != v.dtype or not torch.equal(a[k], v)}
        save_file(diff, str(G / "init" / "asym.stage1.diff.safetensors"))


def site() -> None:
    import compressai

    root = Path(compressai.__file__).parent
    dst = G / "site" / "compressai"
    shutil.rmtree(dst, ignore_errors=True)
    for sub in ("entropy_models", "ops"):
        shutil.copytree(root / sub, dst / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "__init__.py").write_text(
        "_entropy_coder = 'ans'\n\n\ndef get_entropy_coder():\n    return _entropy_coder\n\n\n"
        "def available_entropy_coders():\n    return [_entropy_coder]\n")
    (dst / "_CXX.py").write_text("def pmf_to_quantized_cdf(pmf, precision=16):\n"
                                 "    raise NotImplementedError('not on the GPU machine')\n")
    (dst / "ans.py").write_text("class RansEncoder:\n    pass\n\n\nclass RansDecoder:\n    pass\n")


def wheels() -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(G / "wheels"), "--index-url",
                    "https://pypi.org/simple", "constriction==0.5.0", "pytorch-msssim==1.0.0"], check=True)


def scripts() -> None:
    (G / "recipes").mkdir(parents=True, exist_ok=True)
    for f in ("gpu_train.py", "unpack.py"):
        shutil.copy(DOC / f, G / f)
    for r in ("charm.ctl", "asym", "octave", "weconv3d", "weconv"):
        shutil.copy(Path("docs") / f"{r}.toml", G / "recipes" / f"{r}.toml")


if __name__ == "__main__":
    data()
    init()
    site()
    wheels()
    scripts()
    size = sum(f.stat().st_size for f in G.rglob("*") if f.is_file())
    print(f".gpu: {size / 2**20:.1f} MiB (the device tool's limit is 64 MiB with the tracked files)")
