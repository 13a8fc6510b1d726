# In-process decode of the same Kodak files by the torch models, fp32 and bf16, charm.mse included
# (through torch too, not its numpy decoder), interleaved; median of 5 rounds after a warm-up;
# kodim01-03 at quality 5; 2 threads (docs/speed.md, "Session 22").
# Run from the repository root: python docs/speed/torch_decode.py [MODEL ...] (charm.mse first)
import statistics, sys, time
import torch
from PIL import Image
import liccodec
from liccodec.container import unpack
from liccodec.weights import load_model

torch.set_num_threads(2)
models = ["charm.mse"] + (sys.argv[1:] or ["deform.mse", "twobranch.mse", "octave.mse", "asym.mse", "swin.mse", "dcae.mse"])
imgs = [Image.open(f"../shared/data/kodak/kodim{i:02d}.png").convert("RGB") for i in (1, 2, 3)]
files = {m: [unpack(liccodec.encode(im, model=m, quality=5)) for im in imgs] for m in models}
nets = {m: load_model(m) for m in models}
times = {(m, p): [] for m in models for p in ("fp32", "bf16")}
with torch.inference_mode():
    for r in range(6):
        for m in models:
            for p in ("fp32", "bf16"):
                t0 = time.perf_counter()
                for header, streams in files[m]:
                    ds = nets[m].downsampling
                    hw = (-(-header.height // ds) * ds, -(-header.width // ds) * ds)
                    nets[m].decompress(streams, hw, header.quality, p)
                if r:
                    times[(m, p)].append((time.perf_counter() - t0) / len(imgs))
base = {p: statistics.median(times[("charm.mse", p)]) for p in ("fp32", "bf16")}
print("| model (torch, in process) | decode fp32 s | vs charm.mse | decode bf16 s | vs charm.mse |")
for m in models:
    a, b = statistics.median(times[(m, "fp32")]), statistics.median(times[(m, "bf16")])
    print(f"| {m} | {a:.3f} | {a / base['fp32']:.2f}x | {b:.3f} | {b / base['bf16']:.2f}x |")
