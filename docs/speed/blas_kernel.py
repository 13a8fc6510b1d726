# The numpy coders (charm.mse's `lic encode` and `lic decode`) under each OpenBLAS kernel, against
# charm.mse's torch decoder (fp32 and bf16), in one run (docs/speed.md, "Session 25").
# kodim01-03 at quality 5, in process, 1 and 2 threads; each (kernel, threads) runs in its own
# process, since OpenBLAS reads OPENBLAS_CORETYPE once, when it loads; the processes take turns
# for 3 rounds, and each reports the median of 3 timed passes after a warm-up. Also checks that
# the kernels decode the same files to the same pixels, within one code value.
# Run from the repository root: python docs/speed/blas_kernel.py [KERNEL ...]
# (default: the kernel OpenBLAS detects, then Haswell, the AVX2 one). Also times one float32 and
# one float64 matrix product (6144x1152 by 1152x512, best of 7) under each.
import json, os, statistics, subprocess, sys, time

import numpy as np

IMAGES = [f"../shared/data/kodak/kodim{i:02d}.png" for i in (1, 2, 3)]

WORKER = r"""
import json, statistics, sys, time
import numpy as np
from PIL import Image
import liccodec
from liccodec.runtime import blas
threads, torch_too = int(sys.argv[1]), sys.argv[2] == "1"
blas.set_threads(threads)
imgs = [Image.open(p).convert("RGB") for p in sys.argv[3:]]
files = [liccodec.encode(im, model="charm.mse", quality=5) for im in imgs]
def per_image(fn):
    fn()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter(); fn(); runs.append((time.perf_counter() - t0) / len(imgs))
    return statistics.median(runs)
def gemm_rate(dtype):
    a, b = np.ones((6144, 1152), dtype), np.ones((1152, 512), dtype)
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t0)
    return 6144 * 1152 * 512 / best / 1e9
info = blas.info()
out = {"blas": blas.describe(), "gemm f32": gemm_rate(np.float32), "gemm f64": gemm_rate(np.float64),
       "encode": per_image(lambda: [liccodec.encode(im, model="charm.mse", quality=5) for im in imgs]),
       "decode": per_image(lambda: [liccodec.decode(f) for f in files]),
       "blas_core": info["core"] if info else "?"}
np.save(f"/tmp/blas_kernel_{out['blas_core']}_{threads}.npy",
        np.asarray(liccodec.decode(files[0])))
if torch_too:
    import torch
    from liccodec.container import unpack
    from liccodec.weights import load_model
    torch.set_num_threads(threads)
    net, parsed = load_model("charm.mse"), [unpack(f) for f in files]
    def torch_decode(p):
        with torch.inference_mode():
            for header, streams in parsed:
                ds = net.downsampling
                hw = (-(-header.height // ds) * ds, -(-header.width // ds) * ds)
                net.decompress(streams, hw, header.quality, p)
    out["torch fp32"] = per_image(lambda: torch_decode("fp32"))
    out["torch bf16"] = per_image(lambda: torch_decode("bf16"))
print(json.dumps(out))
"""


def run(kernel: str | None, threads: int, torch_too: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if kernel:
        env["OPENBLAS_CORETYPE"] = kernel
    out = subprocess.run([sys.executable, "-c", WORKER, str(threads), "1" if torch_too else "0", *IMAGES],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


kernels = [None] + (sys.argv[1:] or ["Haswell"])
results: dict = {}
for _ in range(3):
    for threads in (1, 2):
        for k in kernels:
            r = run(k, threads, torch_too=k is None)
            results.setdefault((k, threads), []).append(r)

print("| numpy's BLAS | threads | matrix product f32 / f64, GMAC/s | encode s | decode s | decode vs detected kernel | torch fp32 decode s | torch bf16 decode s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for threads in (1, 2):
    base = statistics.median(r["decode"] for r in results[(None, threads)])
    for k in kernels:
        rs = results[(k, threads)]
        enc, dec = statistics.median(r["encode"] for r in rs), statistics.median(r["decode"] for r in rs)
        torch_s = [f"{statistics.median(r[key] for r in rs):.3f}" if key in rs[0] else "" for key in ("torch fp32", "torch bf16")]
        gemm = f"{statistics.median(r['gemm f32'] for r in rs):.0f} / {statistics.median(r['gemm f64'] for r in rs):.0f}"
        print(f"| {rs[0]['blas']} | {threads} | {gemm} | {enc:.3f} | {dec:.3f} | {dec / base:.2f}x | {' | '.join(torch_s)} |")
cores = [results[(k, 1)][0]["blas_core"] for k in kernels]
ref = np.load(f"/tmp/blas_kernel_{cores[0]}_1.npy").astype(int)
for core in cores[1:]:
    d = np.abs(np.load(f"/tmp/blas_kernel_{core}_1.npy").astype(int) - ref)
    print(f"\nkodim01 decoded under {core} against {cores[0]}: max difference {d.max()}, {100 * (d > 0).mean():.4f}% of values differ")
