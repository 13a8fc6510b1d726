"""Folder conversion: mirror a tree, skip valid outputs, run files in worker processes.

One bad input never stops the batch or touches another output: every file is written
atomically by its own task, and failures are collected and reported at the end.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from liccodec.train.data import IMAGE_SUFFIXES


@dataclass
class Job:
    src: Path
    dst: Path


@dataclass
class Outcome:
    src: Path
    dst: Path
    ok: bool
    skipped: bool = False
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0
    error: str = ""


def plan(src_dir: Path, dst_dir: Path, decode: bool, out_suffix: str) -> list[Job]:
    """Every input under ``src_dir`` (recursively) and its mirrored output path."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if decode:
        files = sorted(p for p in src_dir.rglob("*.lic") if p.is_file())
    else:
        files = sorted(p for p in src_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if dst_dir.resolve().is_relative_to(src_dir.resolve()) and dst_dir.resolve() != src_dir.resolve():
        files = [f for f in files if not f.resolve().is_relative_to(dst_dir.resolve())]
    return [Job(f, (dst_dir / f.relative_to(src_dir)).with_suffix(out_suffix)) for f in files]


_worker_fn: Callable[[Job], Outcome] | None = None


def _init_worker(fn: Callable[[Job], Outcome], threads: int) -> None:
    global _worker_fn
    import torch

    torch.set_num_threads(threads)
    _worker_fn = fn


def _run_in_worker(job: Job) -> Outcome:
    assert _worker_fn is not None
    return _worker_fn(job)


def run(jobs: list[Job], fn: Callable[[Job], Outcome], n_jobs: int = 1, progress: bool = True) -> list[Outcome]:
    """Run ``fn`` over ``jobs`` with a progress bar (ETA, throughput); never raises per file."""
    from tqdm import tqdm

    results: list[Outcome] = []
    bar = tqdm(total=len(jobs), disable=not progress, unit="img", dynamic_ncols=True)
    t0 = time.time()

    def record(o: Outcome) -> None:
        results.append(o)
        bar.update(1)
        done_px = sum(r.pixels for r in results if not r.skipped)
        bar.set_postfix(failed=sum(not r.ok for r in results),
                        MPps=f"{done_px / 1e6 / max(time.time() - t0, 1e-9):.2f}")

    if n_jobs <= 1:
        for j in jobs:
            record(fn(j))
    else:
        threads = max(1, (os.cpu_count() or 1) // n_jobs)
        with ProcessPoolExecutor(n_jobs, initializer=_init_worker, initargs=(fn, threads)) as ex:
            futs = [ex.submit(_run_in_worker, j) for j in jobs]
            for f in as_completed(futs):
                record(f.result())
    bar.close()
    return results
