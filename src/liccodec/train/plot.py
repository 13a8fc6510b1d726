"""Learning curves of a training run from its val.jsonl."""
from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: Path, out: Path) -> None:
    """Plot a run folder's val.jsonl, or a val.jsonl-style file given directly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = run_dir if run_dir.is_file() else run_dir / "val.jsonl"
    val = read_jsonl(src)
    if not val:
        raise FileNotFoundError(f"no validation records in {src}")
    # one series per lambda when the records name it (runs with other level grids then line
    # up), else per level key
    series: dict[str, list[tuple[int, dict]]] = {}
    for v in val:
        for k, r in v.items():
            if k.startswith("level"):
                name = f"lambda {r['lambda']:g}" if "lambda" in r else f"quality {float(k[5:]) + 1:g}"
                series.setdefault(name, []).append((v["step"], r))
    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for i, (label, pts) in enumerate(sorted(series.items())):
        steps = [s for s, _ in pts]
        recs = [r for _, r in pts]
        color = f"C{i}"
        coded = [(s, r) for s, r in pts if "bpp" in r]
        if coded:
            ax_p.plot([s for s, _ in coded], [r["psnr"] for _, r in coded], "-o", color=color, ms=3,
                      label=f"{label} (coded)")
            ax_r.plot([s for s, _ in coded], [r["bpp"] for _, r in coded], "-o", color=color, ms=3,
                      label=f"{label} (coded)")
        ax_p.plot(steps, [r.get("psnr_est", r.get("psnr")) for r in recs], ":", color=color,
                  label=f"{label} (estimate)")
        ax_r.plot(steps, [r["bpp_est"] for r in recs], ":", color=color, label=f"{label} (estimate)")
    ax_p.set(xlabel="training step", ylabel="PSNR on Kodak (dB)", title="Distortion")
    ax_r.set(xlabel="training step", ylabel="bits per pixel on Kodak", title="Rate")
    for ax in (ax_p, ax_r):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Learning curve of {run_dir.stem if run_dir.is_file() else run_dir.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
