"""Train several recipes at once on one lent GPU, each for the same number of steps, and pack
each run's EMA weights compactly (fp16 deltas from the warm start, fp16 for fresh tensors,
fp32 for small ones; lzma) so that they fit the machine's return limits.

  python3 .gpu/gpu_train.py --deadline SECONDS            # the driver: all jobs
  python3 .gpu/gpu_train.py --job NAME --t-end EPOCH      # one job (the driver starts these)
Not shipped: a session tool (.gpu/ is git-ignored).
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RES = Path("/tmp/res")
SPEED = Path("/tmp/speed")
INIT = Path("/tmp/init")
# name -> (recipe file, init file). Priority order: what returns first if space runs out.
JOBS = {
    "ctl": ("charm.ctl.toml", "charm.mse.safetensors"),
    "asym": ("asym.toml", "asym.stage1.safetensors"),
    "octave": ("octave.toml", "charm.mse.safetensors"),
    "weconv3d": ("weconv3d.toml", "charm.mse.safetensors"),
    "weconv": ("weconv.toml", "charm.mse.safetensors"),
}
# controls at fixed step counts (no barrier): the same recipe as "ctl", cut to N steps
FIXED = {"ctl750": 750, "ctl1250": 1250, "ctl2500": 2500}
for _n in FIXED:
    JOBS[_n] = JOBS["ctl"]
TARGET_STEPS = 5000
PROBE = (30, 130)          # steps between which speed is measured
if os.environ.get("GPU_TRAIN_TEST"):  # a quick local dry run on the CPU
    TARGET_STEPS, PROBE = 300, (2, 5)


def prepare_init() -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    INIT.mkdir(parents=True, exist_ok=True)
    charm = INIT / "charm.mse.safetensors"
    charm.write_bytes(lzma.decompress((HERE / "init" / "charm.mse.safetensors.xz").read_bytes()))
    with safe_open(str(charm), "pt") as f:
        meta = f.metadata()
    t = load_file(str(charm))
    t.update(load_file(str(HERE / "init" / "asym.stage1.diff.safetensors")))
    save_file(t, str(INIT / "asym.stage1.safetensors"), metadata=meta)


def recipe_for(name: str):
    from liccodec.train.config import Recipe

    rfile, init = JOBS[name]
    r = Recipe.load(HERE / "recipes" / rfile)
    c = r.train
    c.data, c.holdout, c.init = str(HERE / "data"), 0, str(INIT / init)
    c.out, c.val_every, c.ckpt_every_s = f"/tmp/runs/{name}", 0, 1e12
    c.steps, c.decay_start = TARGET_STEPS, TARGET_STEPS // 2
    if name in FIXED:
        c.steps, c.decay_start = FIXED[name], FIXED[name] // 2
    if os.environ.get("GPU_TRAIN_TEST"):
        c.batch, c.patch_schedule = 1, [[0, 64]]
    return r


def reference_state(recipe):
    """The warm-started model before any step, and the names warm start left fresh."""
    from liccodec.models import get_arch
    from liccodec.train.warmstart import warm_start

    m = get_arch(recipe.arch).build(**recipe.model)
    fresh = set(warm_start(m, recipe.train.init, tuple(recipe.train.reinit)))
    return m.state_dict(), fresh


def pack(ema_state, ref_state, fresh) -> bytes:
    import torch
    from safetensors.torch import save as st_save

    out = {}
    for k, v in ema_state.items():
        v = v.detach().cpu()
        if not v.is_floating_point():
            out[f"i/{k}"] = v.contiguous()
        elif v.numel() <= 4096:
            out[f"f/{k}"] = v.float().contiguous()
        elif k in fresh or k not in ref_state:
            out[f"r/{k}"] = v.half().contiguous()
        else:
            out[f"d/{k}"] = (v.float() - ref_state[k].float()).half().contiguous()
    return lzma.compress(st_save(out), preset=6)


def job(name: str, t_end: float) -> None:
    import numpy as np
    import torch

    torch.backends.cudnn.benchmark = True
    torch.set_num_threads(3)
    from liccodec.train.loop import Trainer, psnr

    recipe = recipe_for(name)
    ref, fresh = reference_state(recipe)
    dev = os.environ.get("GPU_TRAIN_DEVICE", "cuda")
    tr = Trainer(recipe, device=dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    out = Path(recipe.train.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.jsonl", "w")
    acc: dict[str, list[float]] = {}
    t_probe = None
    steps_chosen = None
    cut = False
    t0 = time.time()
    while tr.state.step < tr.cfg.steps:
        ts = time.time()
        m = tr.step()
        tr.state.wall += time.time() - ts
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
        s = tr.state.step
        if s == PROBE[0]:
            sync()
            t_probe = time.time()
        if s == PROBE[1] and name not in FIXED:
            sync()
            sps = (time.time() - t_probe) / (PROBE[1] - PROBE[0])
            feasible = int(PROBE[1] + 0.92 * (t_end - time.time() - 20) / sps)
            (SPEED / name).write_text(json.dumps({"s_per_step": sps, "feasible": feasible}))
            waited = time.time()
            while time.time() - waited < 120:
                got = {p.name: p.read_text() for p in SPEED.iterdir()}
                if all(n in got for n in JOBS):
                    break
                time.sleep(1)
            vals = []
            for n in JOBS:
                p = SPEED / n
                if p.exists() and p.read_text() != "failed":
                    vals.append(json.loads(p.read_text())["feasible"])
            common = min(vals + [TARGET_STEPS])
            steps_chosen = max(PROBE[1] + 5, (common // 250) * 250 if common >= 500 else common)
            tr.cfg.steps, tr.cfg.decay_start = steps_chosen, steps_chosen // 2
            print(f"{name}: {sps:.3f} s/step under load, feasible {feasible}, all {vals}, "
                  f"training {steps_chosen} steps", file=sys.stderr, flush=True)
        if s % 50 == 0:
            rec = {k: float(np.mean(v)) for k, v in acc.items()}
            rec["psnr"] = psnr(rec["mse"])
            rec.update(step=s, wall=round(tr.state.wall, 1), t=round(time.time() - t0, 1))
            log.write(json.dumps(rec) + "\n")
            log.flush()
            acc = {}
        if time.time() > t_end:
            cut = True
            print(f"{name}: deadline reached at step {s} of {tr.cfg.steps}", file=sys.stderr, flush=True)
            break
    log.close()
    meta = {"name": name, "recipe": recipe.to_dict(), "state": vars(tr.state), "cut": cut,
            "steps_planned": tr.cfg.steps, "device": torch.cuda.get_device_name(0) if dev == "cuda" else dev,
            "torch": torch.__version__, "train_seconds": round(time.time() - t0, 1)}
    blob = pack(tr.ema.state_dict(), ref, fresh)
    (RES / f"{name}.pack.xz").write_bytes(blob)
    if os.environ.get("GPU_TRAIN_TEST"):
        torch.save(tr.ema.state_dict(), RES / f"{name}.ema.pt")
    (RES / f"{name}.meta.json").write_text(json.dumps(meta, indent=1))
    print(f"{name}: packed {len(blob) / 1e6:.1f} MB, step {tr.state.step}", file=sys.stderr, flush=True)


def driver(deadline: float, out_dir: Path, budget_mb: float) -> None:
    import shutil

    t_start = time.time()
    # a machine kept warm between calls keeps /tmp: old speed markers would pass the barrier
    # (session 20's second call settled each job's steps alone because of them)
    for d in (RES, SPEED, INIT):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
    prepare_init()
    print(f"init ready in {time.time() - t_start:.1f} s", flush=True)
    t_end = t_start + deadline
    env = dict(os.environ, OMP_NUM_THREADS="3", PYTHONUNBUFFERED="1")
    procs = {}
    for name in JOBS:
        logf = open(RES / f"{name}.log", "w")
        procs[name] = subprocess.Popen([sys.executable, __file__, "--job", name, "--t-end", str(t_end),
                                        "--jobs", ",".join(JOBS)],
                                       stdout=logf, stderr=subprocess.STDOUT, env=env)
    for name, p in procs.items():
        rc = p.wait()
        print(f"{name}: exit {rc} at {time.time() - t_start:.0f} s", flush=True)
    os.system("nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv")
    # logs first (small), then packs by priority while they fit; the rest stays in RES for a second call
    import tarfile

    with tarfile.open(out_dir / "logs.tar.xz", "w:xz") as tf:
        for name in JOBS:
            for f in (RES / f"{name}.log", RES / f"{name}.meta.json", Path(f"/tmp/runs/{name}/train.jsonl")):
                if f.exists():
                    tf.add(f, arcname=f"{name}/{f.name}")
    used = (out_dir / "logs.tar.xz").stat().st_size / 2**20
    chunk = 15 * 2**20
    files = 1
    for name in JOBS:
        f = RES / f"{name}.pack.xz"
        if not f.exists():
            continue
        data = f.read_bytes()
        parts = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        if used + len(data) / 2**20 > budget_mb or files + len(parts) > 8:
            print(f"{name}: {len(data) / 2**20:.1f} MiB left for a second call", flush=True)
            continue
        for i, part in enumerate(parts):
            (out_dir / f"{name}.pack.xz.{i}").write_bytes(part)
        used += len(data) / 2**20
        files += len(parts)
        f.rename(RES / f"{name}.sent")
    print(f"returned {used:.1f} MiB in {files} files; total {time.time() - t_start:.0f} s", flush=True)


def second(out_dir: Path) -> None:
    chunk = 15 * 2**20
    for f in sorted(RES.glob("*.pack.xz")):
        data = f.read_bytes()
        for i in range(0, len(data), chunk):
            (out_dir / f"{f.name}.{i // chunk}").write_bytes(data[i:i + chunk])
        print("sent", f.name, len(data))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--job")
    ap.add_argument("--t-end", type=float)
    ap.add_argument("--deadline", type=float, default=480)
    ap.add_argument("--budget-mb", type=float, default=62)
    ap.add_argument("--second", action="store_true")
    ap.add_argument("--jobs", default=",".join(JOBS))
    a = ap.parse_args()
    JOBS = {k: JOBS[k] for k in a.jobs.split(",")}
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    if a.second:
        second(out)
    elif a.job:
        try:
            job(a.job, a.t_end)
        except Exception:
            traceback.print_exc()
            (SPEED / a.job).write_text("failed")
            sys.exit(1)
    else:
        driver(a.deadline, out, a.budget_mb)
