# Time and size of writing decoded PNGs at zlib levels 1, 3 and 6 (Pillow's default): the first 8
# Kodak images coded by charm.mse at quality 5 and decoded, best of 3 saves each (docs/speed.md,
# "Session 25"). Run from the repository root: python docs/speed/png_level.py
import glob, io, time

import liccodec

totals = {}
paths = sorted(glob.glob("../shared/data/kodak/*.png"))[:8]
for path in paths:
    img = liccodec.decode(liccodec.encode(path, model="charm.mse", quality=5))
    for level in (1, 3, 6):
        best = float("inf")
        for _ in range(3):
            buf = io.BytesIO()
            t0 = time.perf_counter()
            img.save(buf, "PNG", compress_level=level)
            best = min(best, time.perf_counter() - t0)
        t, n = totals.get(level, (0.0, 0))
        totals[level] = (t + best, n + len(buf.getvalue()))
for level, (t, n) in totals.items():
    print(f"level {level}: {1e3 * t / len(paths):.0f} ms, {n / len(paths) / 1e3:.0f} kB an image")
