"""Peak memory and time of the residual layer alone on one image (docs/residual.md, "Limits").

Codes IMAGE with charm.mse at quality 7, then runs ``liccodec.residual`` over it at steps
of 32, 8 and 2 code values under ``tracemalloc`` (numpy reports its arrays to it), and
prints the stream size, the encode and decode times and their peaks.

    python docs/residual/memory.py ../shared/data/kodak/kodim01.png
"""
import sys
import time
import tracemalloc

import numpy as np
from PIL import Image

from liccodec import residual
from liccodec.codec import decode_rgb, encode


def traced(fn):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    seconds, peak = time.perf_counter() - t, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def main(path: str) -> None:
    x = np.asarray(Image.open(path).convert("RGB"))
    x_hat = decode_rgb(encode(Image.fromarray(x), quality=7))[1]
    for step in (32, 8, 2):
        data, te, pe = traced(lambda: residual.encode(x, x_hat, step * residual.STEP_UNIT))
        _, td, pd = traced(lambda: residual.decode(data, x_hat))
        print(f"step {step}: {len(data)} B; encode {te:.2f} s, peak {pe / 1e6:.1f} MB; "
              f"decode {td:.2f} s, peak {pd / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1])
