"""What a fresh `lic decode` process spends before and around the decode, for two source
trees side by side (session 26): importing the CLI, reading and verifying charm.mse's weights
into the numpy decoder, and a whole `lic decode` of one file. The two trees take turns, run
by run, so drifts of the machine's load fall on both alike; medians are printed.

    git worktree add /tmp/before <rev>
    lic encode ../shared/data/kodak/kodim01.png -o /tmp/k1.lic
    python docs/speed/startup.py /tmp/before/src src /tmp/k1.lic 15

Both trees read the weights from this checkout's models/ (LICCODEC_MODELS).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = """
import time, sys
t0 = time.perf_counter(); import liccodec.cli.main; t1 = time.perf_counter()
from liccodec import runtime
runtime.load_decoder("charm.mse"); t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def run(src: str, lic: str, out: str) -> tuple[float, float, float]:
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()),
           "LICCODEC_MODELS": str(Path(__file__).resolve().parents[2] / "models")}
    parts = subprocess.run([sys.executable, "-c", PARTS], env=env, capture_output=True, text=True, check=True)
    imp, load = map(float, parts.stdout.split())
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from liccodec.cli.main import run; run()", "decode", lic, "-o", out,
                    "--overwrite", "--quiet"], env=env, check=True)
    return imp, load, time.perf_counter() - t0


def main() -> None:
    before, after, lic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    times = {before: [], after: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(n):
            for src in (before, after):
                times[src].append(run(src, lic, f"{tmp}/out.png"))
    print("| tree | import CLI s | load + verify weights (numpy decoder) s | whole `lic decode` s |")
    print("|---|---:|---:|---:|")
    for src, rows in times.items():
        med = [statistics.median(col) for col in zip(*rows)]
        print(f"| {src} | {med[0]:.4f} | {med[1]:.4f} | {med[2]:.4f} |")


if __name__ == "__main__":
    main()
