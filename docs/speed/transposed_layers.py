# One transposed convolution (k=5, stride 2, padding 2) at the sizes charm.mse runs for a Kodak
# image, best of 7, 1 BLAS thread (docs/speed.md, "Session 25"):
# - float32, g_s's layers: another ops.py's conv_transpose2d (e.g. the one before session 25)
#   against this tree's;
# - float64 holding integers, the hyper-synthesis' layers: the scatter (what runs) against the
#   phase products, which give the same integers.
# Run from the repository root:
#   git show ced6016:src/liccodec/runtime/ops.py > /tmp/ops_before.py
#   python docs/speed/transposed_layers.py /tmp/ops_before.py
import importlib.util, sys, time

import numpy as np

from liccodec.runtime import blas, ops

spec = importlib.util.spec_from_file_location("ops_before", sys.argv[1])
before = importlib.util.module_from_spec(spec)
spec.loader.exec_module(before)
blas.set_threads(1)
print(blas.describe())


def best(fn):
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


rng = np.random.default_rng(0)
print("| float32 (g_s), input HxWxCi -> Co | before, ms | this tree, ms | speed-up | largest difference |")
print("|---|---:|---:|---:|---:|")
for h, w_, ci, co in [(32, 48, 192, 128), (64, 96, 128, 128), (128, 192, 128, 128)]:
    x = rng.standard_normal((h, w_, ci)).astype(np.float32)
    w = (rng.standard_normal((ci, co, 5, 5)) * 0.05).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    a, t = best(lambda: before.conv_transpose2d(x, w, b, 2, 2, 1)), best(lambda: ops.conv_transpose2d(x, w, b, 2, 2, 1))
    d = np.abs(before.conv_transpose2d(x, w, b, 2, 2, 1) - ops.conv_transpose2d(x, w, b, 2, 2, 1)).max()
    print(f"| {h}x{w_}x{ci} -> {co} | {1e3 * a:.1f} | {1e3 * t:.1f} | {a / t:.2f}x | {d:.1e} |")
print()
print("| float64 integers (h_s), input HxWxCi -> Co | scatter, ms | phase products, ms | phases vs scatter | equal |")
print("|---|---:|---:|---:|---|")
for h, w_, ci, co in [(8, 12, 192, 192), (16, 24, 192, 288), (32, 48, 192, 288)]:
    x = rng.integers(-2000, 2000, (h, w_, ci)).astype(np.float64)
    w = rng.integers(-100, 100, (ci, co, 5, 5)).astype(np.float64)
    b = rng.integers(-1000, 1000, co).astype(np.float64)
    sc = best(lambda: ops._scatter_transpose2d(x, w, b, 2, 2, 2 * h, 2 * w_))
    ph = best(lambda: ops._phase_transpose2d(x, w, b, 2, 2, 2 * h, 2 * w_))
    same = np.array_equal(ops._scatter_transpose2d(x, w, b, 2, 2, 2 * h, 2 * w_),
                          ops._phase_transpose2d(x, w, b, 2, 2, 2 * h, 2 * w_))
    print(f"| {h}x{w_}x{ci} -> {co} | {1e3 * sc:.1f} | {1e3 * ph:.1f} | {sc / ph:.2f}x | {same} |")
