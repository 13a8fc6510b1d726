"""Learning curves of a training run from its val.jsonl."""
from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val = read_jsonl(run_dir / "val.jsonl")
    if not val:
        raise FileNotFoundError(f"no validation records in {run_dir / 'val.jsonl'}")
    levels = sorted({k for v in val for k in v if k.startswith("level")})
    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for i, lv in enumerate(levels):
        pts = [v for v in val if lv in v]
        steps = [v["step"] for v in pts]
        real = [v[lv].get("psnr") for v in pts]
        color = f"C{i}"
        label = f"quality {float(lv[5:]) + 1:g}"
        if all("bpp" in v[lv] for v in pts):
            ax_p.plot(steps, real, "-o", color=color, ms=3, label=f"{label} (coded)")
            ax_r.plot(steps, [v[lv]["bpp"] for v in pts], "-o", color=color, ms=3, label=f"{label} (coded)")
        ax_p.plot(steps, [v[lv].get("psnr_est", v[lv].get("psnr")) for v in pts], ":", color=color,
                  label=f"{label} (estimate)")
        ax_r.plot(steps, [v[lv]["bpp_est"] for v in pts], ":", color=color, label=f"{label} (estimate)")
    ax_p.set(xlabel="training step", ylabel="PSNR on Kodak (dB)", title="Distortion")
    ax_r.set(xlabel="training step", ylabel="bits per pixel on Kodak", title="Rate")
    for ax in (ax_p, ax_r):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Learning curve of {run_dir.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
