"""asym.mse against charm.mse, plain and with 50 refinement steps, on two Kodak images at qualities 2 and 6
(docs/training-history.md, Next steps). Prints one JSON line per model, image and quality:
(bpp, PSNR-RGB, seconds) of real files. Run from the repository root: python docs/refine/light.py"""
import time, numpy as np, liccodec, math, json
from PIL import Image
for model in ("asym.mse", "charm.mse"):
    for name in ("kodim01", "kodim23"):
        p = f"../shared/data/kodak/{name}.png"
        x = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)
        for q in (2, 6):
            row = {"model": model, "img": name, "q": q}
            for r in (0, 50):
                t = time.time(); d = liccodec.encode(p, model=model, quality=q, refine=r); dt = time.time() - t
                o = np.asarray(liccodec.decode(d).convert("RGB"), dtype=np.float64)
                row[f"r{r}"] = (round(len(d) * 8 / x[..., 0].size, 4), round(10 * math.log10(255**2 / ((o - x) ** 2).mean()), 3), round(dt, 1))
            print(json.dumps(row), flush=True)
