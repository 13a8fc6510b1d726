# In-process liccodec.encode of kodim01-03 at quality 5, charm.mse and the models named (default
# weconv.mse) interleaved, median of 3 rounds after a warm-up
# Run from the repository root: python docs/speed/encode_time.py [MODEL ...] (docs/models/weconv.md, "Session 24")
import statistics, sys, time
import torch
from PIL import Image
import liccodec
torch.set_num_threads(2)
imgs = [Image.open(f"../shared/data/kodak/kodim{i:02d}.png").convert("RGB") for i in (1, 2, 3)]
t = {m: [] for m in ["charm.mse"] + (sys.argv[1:] or ["weconv.mse"])}
for r in range(4):
    for m in t:
        t0 = time.perf_counter()
        for im in imgs:
            liccodec.encode(im, model=m, quality=5)
        if r:
            t[m].append((time.perf_counter() - t0) / len(imgs))
for m, v in t.items():
    print(m, round(statistics.median(v), 3), f"{statistics.median(v) / statistics.median(t['charm.mse']):.2f}x")
