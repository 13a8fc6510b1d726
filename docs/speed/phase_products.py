# charm.mse's numpy decode with the transposed convolutions of another ops.py (e.g. the one before
# session 25) against this tree's, in one process, interleaved: kodim01-03 at quality 5, median of
# 3 rounds after a warm-up, at the BLAS thread count given; then the decoded pixels of kodim01, 05
# and 23 at qualities 1, 5 and 8 compared (docs/speed.md, "Session 25"). Run from the repository root:
#   git show ced6016:src/liccodec/runtime/ops.py > /tmp/ops_before.py
#   python docs/speed/phase_products.py /tmp/ops_before.py 1
import importlib.util, statistics, sys, time

import numpy as np

import liccodec
import liccodec.runtime as rt
from liccodec.runtime import blas

spec = importlib.util.spec_from_file_location("ops_before", sys.argv[1])
before = importlib.util.module_from_spec(spec)
spec.loader.exec_module(before)
impl = {"before": before.conv_transpose2d, "this tree": rt.conv_transpose2d}
blas.set_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
files = [liccodec.encode(f"../shared/data/kodak/kodim{i:02d}.png", model="charm.mse", quality=5) for i in (1, 2, 3)]
times = {name: [] for name in impl}
for r in range(4):
    for name, fn in impl.items():
        rt.conv_transpose2d = fn
        t0 = time.perf_counter()
        for f in files:
            liccodec.decode(f)
        if r:
            times[name].append((time.perf_counter() - t0) / len(files))
med = {name: statistics.median(v) for name, v in times.items()}
print(blas.describe())
print(" ".join(f"{name}: {s:.3f} s" for name, s in med.items()), f"(before / this tree: {med['before'] / med['this tree']:.2f}x)")
total = differ = worst = 0
for name in ("kodim01", "kodim05", "kodim23"):
    for q in (1, 5, 8):
        data = liccodec.encode(f"../shared/data/kodak/{name}.png", model="charm.mse", quality=q)
        px = {}
        for key, fn in impl.items():
            rt.conv_transpose2d = fn
            px[key] = np.asarray(liccodec.decode(data)).astype(int)
        d = np.abs(px["before"] - px["this tree"])
        total, differ, worst = total + d.size, differ + int((d > 0).sum()), max(worst, int(d.max()))
rt.conv_transpose2d = impl["this tree"]
print(f"pixels: {differ} of {total} values differ ({100 * differ / total:.4f}%), by at most {worst}")
