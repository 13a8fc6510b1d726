# In-process liccodec.decode (the numpy decoder where the architecture has one) of kodim01-03
# coded at quality 5, charm.mse and the models named interleaved, median of 3 rounds after a
# warm-up, 2 threads (torch and numpy's BLAS). Also the encode, the same way.
# Run from the repository root: python docs/speed/decode_time.py MODEL ... (docs/training-history.md, "Session 26")
import statistics, sys, time
from PIL import Image
import liccodec
from liccodec.eval.bench import threads_limited
imgs = [Image.open(f"../shared/data/kodak/kodim{i:02d}.png").convert("RGB") for i in (1, 2, 3)]
models = ["charm.mse"] + sys.argv[1:]
with threads_limited(2):
    enc = {m: [] for m in models}
    dec = {m: [] for m in models}
    for r in range(4):
        for m in models:
            t0 = time.perf_counter()
            files = [liccodec.encode(im, model=m, quality=5) for im in imgs]
            t1 = time.perf_counter()
            for f in files:
                liccodec.decode(f)
            t2 = time.perf_counter()
            if r:
                enc[m].append((t1 - t0) / len(imgs))
                dec[m].append((t2 - t1) / len(imgs))
for m in models:
    e, d = statistics.median(enc[m]), statistics.median(dec[m])
    print(f"{m}: encode {e:.3f} s ({e / statistics.median(enc['charm.mse']):.2f}x), "
          f"decode {d:.3f} s ({d / statistics.median(dec['charm.mse']):.2f}x)")
