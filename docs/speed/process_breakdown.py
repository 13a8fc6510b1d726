"""Where a whole `lic decode` process spends its time (session 27, docs/speed.md): the
interpreter's start, importing the CLI and the decoder's modules, loading and verifying the weights, reading the file,
the decode itself, encoding the PNG, writing it, and the interpreter's exit.

Each run starts a fresh `python` that walks the steps `lic decode FILE -o OUT.png` takes, in
the same order and through the same functions, with a timestamp after each; the parent
stamps the launch and the end. Wall-clock stamps (time.time) are compared across the two
processes, on the same machine. After the parts it times one real `lic decode` process, so
the sum can be checked against the command. Runs alternate the two; medians are printed.

    lic encode ../shared/data/kodak/kodim01.png -o /tmp/k1.lic
    python docs/speed/process_breakdown.py /tmp/k1.lic 10
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

STEPS = """
import sys, time
stamps = [time.time()]
import liccodec.cli.main
stamps.append(time.time())
from liccodec import runtime
from liccodec.container import read_header
stamps.append(time.time())
data = open(sys.argv[1], "rb").read()
stamps.append(time.time())
runtime.load_decoder(read_header(data).model_id)
stamps.append(time.time())
from liccodec.codec import decode
img = decode(data)
stamps.append(time.time())
from liccodec.batch.workers import image_bytes
out = image_bytes(img, None, sys.argv[2])
stamps.append(time.time())
from liccodec.fileio import atomic_write_bytes
from pathlib import Path
atomic_write_bytes(Path(sys.argv[2]), out)
stamps.append(time.time())
print(" ".join(repr(s) for s in stamps))
"""

PARTS = ["interpreter start", "import the CLI", "import the decoder (numpy, liccodec.runtime)", "read the file", "load + verify the weights", "decode",
         "encode the PNG", "write the PNG", "interpreter exit"]


def parts(lic: str, out: str) -> list[float]:
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", STEPS, lic, out], capture_output=True, text=True, check=True)
    t1 = time.time()
    stamps = [t0, *map(float, res.stdout.split()), t1]
    return [b - a for a, b in zip(stamps, stamps[1:])]


def whole(lic: str, out: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["lic", "decode", lic, "-o", out, "--overwrite", "--quiet"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    lic, n = sys.argv[1], int(sys.argv[2])
    rows, totals = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.png")
        for _ in range(n):
            rows.append(parts(lic, out))
            os.remove(out)
            totals.append(whole(lic, out))
    med = [statistics.median(col) for col in zip(*rows)]
    print("| part | seconds (median) | share |")
    print("|---|---:|---:|")
    for name, s in zip(PARTS, med):
        print(f"| {name} | {s:.3f} | {100 * s / sum(med):.0f}% |")
    print(f"| sum of the parts | {sum(med):.3f} | |")
    print(f"| whole `lic decode` process | {statistics.median(totals):.3f} | |")


if __name__ == "__main__":
    main()
