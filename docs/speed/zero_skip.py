# deform.mse's zero-channel skipping, measured (docs/speed.md, "Session 22"): the same weights
# coding with skip_zero on and off (the latent codec's attribute), kodim01-06 at quality 5, in one
# process, 2 threads: the latents' decode (rANS + integer networks), median of 5 interleaved
# rounds after a warm-up, and the bytes. Run from the repository root: python docs/speed/zero_skip.py
import statistics, time
import numpy as np, torch
from PIL import Image
from liccodec.imageio import pad_to_multiple, to_tensor
from liccodec.weights import load_model

torch.set_num_threads(2)
net = load_model("deform.mse")
lat = net.latent
q = 5000
imgs = [np.asarray(Image.open(f"../shared/data/kodak/kodim{i:02d}.png").convert("RGB")) for i in range(1, 7)]
cases = []
with torch.no_grad():
    for img in imgs:
        x = pad_to_multiple(to_tensor(img), 64)
        y = net.g_a(x)
        hw = (x.shape[2] // 64, x.shape[3] // 64)
        for skip in (True, False):
            lat.skip_zero = skip
            streams, y_hat = lat.compress(y, q)
            nbytes = sum(len(v) for v in streams.values())
            cases.append((skip, streams, hw, nbytes))
    times = {True: [], False: []}
    for r in range(6):
        per = {True: 0.0, False: 0.0}
        for skip, streams, hw, _ in cases:
            lat.skip_zero = skip
            t0 = time.perf_counter(); lat.decompress(streams, hw, q); per[skip] += time.perf_counter() - t0
        if r:  # the first round warms up
            for k in per: times[k].append(per[k] / len(imgs))
lat.skip_zero = True
on, off = statistics.median(times[True]), statistics.median(times[False])
b_on = sum(n for s, _, _, n in cases if s); b_off = sum(n for s, _, _, n in cases if not s)
print(f"latent decode per image: skip on {on:.4f} s, off {off:.4f} s, ratio on/off {on/off:.3f}")
print(f"bytes (6 images): skip on {b_on}, off {b_off} ({100*(b_on/b_off-1):+.4f}%)")
