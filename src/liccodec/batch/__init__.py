"""Folder conversion: mirror a tree, skip valid outputs, run files on an engine, report.

    plan(src, dst)  ->  [Job]  --engine-->  [Outcome]  ->  Report (summary table, failures)

Engines: ``local`` (this module: in-process for one job, else worker processes) and
``ray`` (``liccodec.batch.ray``, optional). Both run the same per-file function, so they
write the same files.

Guarantees, whatever the engine:

* One bad input never stops the batch or touches another output: each file is written
  atomically (temp file + rename) by its own task, exceptions become failed outcomes, and
  a worker process that dies (crash, out of memory) is replaced; the files it was running
  are retried one by one in isolation, so only the one that kills a worker fails.
* Resumable, never stale: a state file in the output folder (:data:`STATE_NAME`) records
  what each output was made from (the input's name, size and mtime, the model, weights
  digest and quality or target) and the output's own size and mtime. The per-file function
  skips an output only when that record matches and the output is valid, and redoes it
  otherwise (changed input, other settings, damaged or foreign output). Outputs are never
  partial under their final name; temp files a killed run left behind are removed by the
  next run (:func:`remove_stale_parts`).
* One output per input: inputs whose outputs would share a name (``a.png`` and ``a.jpg``,
  or ``b.png`` and ``b.PNG``) keep their suffix in it (``a.png.lic``); names that still
  clash, compared case-insensitively, stop the run before anything is coded (:func:`plan`).
* Bounded memory for huge folders: only a few tasks per worker are in flight at a time,
  and progress totals are kept incrementally.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import unicodedata
import warnings
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from liccodec.errors import UsageError

if TYPE_CHECKING:  # the process pool's modules load when a folder runs in workers, not at start-up
    from concurrent.futures import Future, ProcessPoolExecutor

ENGINES = ("local", "ray")
IN_FLIGHT_PER_WORKER = 2       # queued tasks per worker: keeps workers busy, memory bounded
STALE_PART_SECONDS = 3600      # temp files older than this belong to a run that died
STATE_NAME = ".lic-batch.json"  # in the output folder: what each output was made from
STATE_FLUSH_SECONDS = 10.0     # the state file is rewritten at most this often (and at the end)


@dataclass
class Job:
    src: Path
    dst: Path
    record: dict | None = None   # the state file's record of the existing dst, if any


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
    record: dict | None = None   # what the written dst was made from (see :func:`make_record`)


Work = Callable[[Job], Outcome]


def plan(src_dir: Path, dst_dir: Path, decode: bool, out_suffix: str) -> list[Job]:
    """Every input under ``src_dir`` (recursively) and its mirrored output path.

    The output is the input's path under ``dst_dir`` with ``out_suffix`` for its suffix
    (``a.png`` -> ``a.lic``). Inputs of one folder whose outputs would then share a name,
    compared case-insensitively (``a.png`` and ``a.jpg``; ``b.png`` and ``b.PNG``), keep their
    suffix instead (``a.png.lic``, ``a.jpg.lic``). If names still clash (``b.png.lic`` and
    ``b.PNG.lic`` are one file on a case-insensitive disk), :class:`UsageError` names them and
    nothing is coded: no two inputs ever map to one output.
    """
    from liccodec.train.data import IMAGE_SUFFIXES  # imports torch: not at module import

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if decode:
        files = sorted(p for p in src_dir.rglob("*.lic") if p.is_file())
    else:
        files = sorted(p for p in src_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if dst_dir.resolve().is_relative_to(src_dir.resolve()) and dst_dir.resolve() != src_dir.resolve():
        files = [f for f in files if not f.resolve().is_relative_to(dst_dir.resolve())]
    return [Job(f, dst_dir / n) for f, n in zip(files, output_names([f.relative_to(src_dir) for f in files],
                                                                    out_suffix))]


def _folded(p: Path) -> str:
    """A name as a case-insensitive (and Unicode-normalising) file system compares it."""
    return unicodedata.normalize("NFC", p.as_posix()).casefold()


def output_names(rel: list[Path], suffix: str) -> list[Path]:
    """The output names of inputs ``rel`` (relative paths); see :func:`plan` for the rule."""
    plain = [r.with_suffix(suffix) for r in rel]
    shared = Counter(_folded(p) for p in plain)
    names = [r.with_name(r.name + suffix) if shared[_folded(p)] > 1 else p for r, p in zip(rel, plain)]
    first: dict[str, Path] = {}
    clashes: list[str] = []
    for r, n in zip(rel, names):
        k = _folded(n)
        if k in first:
            clashes.append(f"{first[k]} and {r} (-> {n})")
        else:
            first[k] = r
    if clashes:
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise UsageError("inputs whose outputs would have the same name (compared case-insensitively): "
                         + "; ".join(clashes[:5]) + more + ". Rename one of each; nothing was coded")
    return names


# ---- the state file: what each output was made from -------------------------------------------

def stamp(path: Path) -> dict:
    """Size and modification time of a file: what tells a changed input or output."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def make_record(job: Job, src_stamp: dict, params: dict) -> dict:
    """The record of a just-written ``job.dst``: made from ``job.src`` (as ``src_stamp``,
    taken *before* it was read) with ``params`` (JSON values: model, digest, quality ...)."""
    return {"src": {"name": job.src.name, **src_stamp}, "params": params, "out": stamp(job.dst)}


def up_to_date(job: Job, src_stamp: dict, params: dict) -> bool:
    """Whether ``job.dst`` is recorded as made from ``job.src`` as it is now, with ``params``,
    and is unchanged since. The caller still checks that the output is valid."""
    if not job.record:
        return False
    try:
        now = {"src": {"name": job.src.name, **src_stamp}, "params": params, "out": stamp(job.dst)}
    except OSError:
        return False
    return job.record == json.loads(json.dumps(now))  # compare as the state file stores it


class State:
    """The state file of an output folder (:data:`STATE_NAME`): ``{"outputs": {dst: record}}``
    with ``dst`` relative to the folder. Written atomically, at most every few seconds and at
    the end, by the driver only (workers report records in their outcomes). A run killed
    between two writes loses the records since the last one: those outputs are redone."""

    VERSION = 1

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / STATE_NAME
        self.changes: dict[str, dict | None] = {}
        self.last_flush = time.monotonic()
        self.flush_cost = 0.0

    def _read(self) -> dict[str, dict]:
        try:
            d = json.loads(self.path.read_bytes())
            if d.get("version") == self.VERSION and isinstance(d.get("outputs"), dict):
                return d["outputs"]
        except (OSError, ValueError, AttributeError):
            pass  # missing or damaged: every output is redone once, nothing is lost
        return {}

    def _key(self, dst: Path) -> str:
        return Path(dst).relative_to(self.root).as_posix()

    def attach(self, jobs: list[Job]) -> None:
        """Give each job the record of its existing output."""
        outputs = self._read()
        for j in jobs:
            j.record = outputs.get(self._key(j.dst))

    def record(self, o: Outcome) -> None:
        if o.skipped:
            return
        self.changes[self._key(o.dst)] = o.record if o.ok else None
        # Rewriting a big state file costs time: never spend more than ~5% of the run on it.
        if time.monotonic() - self.last_flush > max(STATE_FLUSH_SECONDS, 20 * self.flush_cost):
            self.flush()

    def flush(self) -> None:
        from liccodec.fileio import atomic_write_bytes

        if not self.changes:
            return
        t0 = time.monotonic()
        outputs = self._read()  # another run may have written it since: keep its records
        for k, r in self.changes.items():
            if r is None:
                outputs.pop(k, None)
            else:
                outputs[k] = r
        atomic_write_bytes(self.path, json.dumps({"version": self.VERSION, "outputs": outputs},
                                                 separators=(",", ":")).encode())
        self.changes.clear()
        self.last_flush = time.monotonic()
        self.flush_cost = self.last_flush - t0


def remove_stale_parts(jobs: Iterable[Job], max_age_s: float = STALE_PART_SECONDS, state: Path | None = None) -> int:
    """Delete temp files (``.NAME.*.part``, see ``liccodec.fileio``) that a killed run left
    beside the planned outputs. Recent ones are kept: another run may be writing them."""
    now, removed = time.time(), 0
    by_dir: dict[Path, set[str]] = {}
    for j in jobs:
        by_dir.setdefault(j.dst.parent, set()).add(j.dst.name)
    if state is not None:
        by_dir.setdefault(state.parent, set()).add(state.name)
    for folder, names in by_dir.items():
        if not folder.is_dir():
            continue
        for p in folder.glob(".*.part"):
            stem = p.name[1:].rsplit(".", 2)[0]  # ".a.lic.x8f2k.part" -> "a.lic"
            try:
                if stem in names and now - p.stat().st_mtime > max_age_s:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
    return removed


# ---- progress ------------------------------------------------------------------------------

class Progress:
    """A progress bar over the files that need work: ETA, images/s and megapixels/s.

    Skipped files (valid output already there) leave the total instead of counting as
    done, so a resumed run's ETA and rate describe real conversions only.
    """

    def __init__(self, total: int, enabled: bool = True, desc: str = "", state: State | None = None):
        from tqdm import tqdm

        self.state = state

        self.bar = tqdm(total=total, disable=not enabled, unit="img", dynamic_ncols=True, desc=desc or None,
                        smoothing=0.1)
        self.t0 = time.perf_counter()
        self.results: list[Outcome] = []
        self.megapixels = 0.0
        self.finished = 0   # converted or failed
        self.failed = 0
        self.skipped = 0

    def record(self, o: Outcome) -> None:
        self.results.append(o)
        if self.state is not None:
            self.state.record(o)
        if o.skipped:
            self.skipped += 1
            self.bar.total -= 1
            self.bar.refresh()
        else:
            self.finished += 1
            self.failed += not o.ok
            self.megapixels += o.pixels / 1e6
            self.bar.update(1)
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.megapixels / elapsed:.2f} MP/s, {self.skipped} skipped, "
                                 f"{self.failed} failed", refresh=False)

    def close(self) -> None:
        self.bar.close()


# ---- the local engine -------------------------------------------------------------------------

_worker_fn: Work | None = None


def set_threads(threads: int) -> None:
    """Limit this worker's intra-op threads, without importing torch or numpy before they
    are needed: torch's and numpy's BLAS's (OpenBLAS reads OMP_NUM_THREADS when it loads,
    so a BLAS loaded already is told directly)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    # read by torch and by OpenBLAS when first imported
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if "numpy" in sys.modules:
        from liccodec.runtime import blas

        blas.set_threads(threads)


def _init_worker(fn: Work, threads: int, warning_filters: list) -> None:
    global _worker_fn
    warnings.filters[:] = warning_filters  # the CLI's quieting applies in workers too
    set_threads(threads)
    _worker_fn = fn


def _run_in_worker(job: Job) -> Outcome:
    assert _worker_fn is not None
    return _worker_fn(job)


def _died(job: Job, detail: str) -> Outcome:
    return Outcome(job.src, job.dst, False, error=f"worker process died ({detail})")


def run(jobs: list[Job], fn: Work, n_jobs: int = 1, progress: bool | Progress = True) -> list[Outcome]:
    """Run ``fn`` over ``jobs`` (the local engine); never raises for one file's failure.

    ``n_jobs`` 1 runs in this process; more start that many worker processes ("spawn":
    no state forked from a threaded parent) sharing the CPU cores between them.
    """
    prog = progress if isinstance(progress, Progress) else Progress(len(jobs), progress)
    try:
        if n_jobs <= 1:
            for j in jobs:
                prog.record(fn(j))
        else:
            _run_pool(jobs, fn, n_jobs, prog.record)
    finally:
        if not isinstance(progress, Progress):
            prog.close()
    return prog.results


def _pool(n: int, fn: Work) -> ProcessPoolExecutor:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    threads = max(1, (os.cpu_count() or 1) // n)
    return ProcessPoolExecutor(n, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(fn, threads, list(warnings.filters)))


@contextmanager
def pipe_errors_as_exceptions() -> Iterator[None]:
    """Ignore SIGPIPE while worker processes run.

    ``lic`` lets SIGPIPE end it quietly (so that ``lic info x.lic | head`` does); but when a
    worker dies, writing to its pipe must raise (and become "worker process died" for one
    file), not kill the whole batch without a word.
    """
    if not hasattr(signal, "SIGPIPE") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGPIPE, old)


def _run_pool(jobs: list[Job], fn: Work, n_jobs: int, record: Callable[[Outcome], None]) -> None:
    with pipe_errors_as_exceptions():
        _run_pool_inner(jobs, fn, n_jobs, record)


def _run_pool_inner(jobs: list[Job], fn: Work, n_jobs: int, record: Callable[[Outcome], None]) -> None:
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = deque(jobs)
    while pending:
        lost: list[Job] = []
        with _pool(n_jobs, fn) as ex:
            inflight: dict[Future[Outcome], Job] = {}
            while (pending or inflight) and not lost:
                while pending and len(inflight) < IN_FLIGHT_PER_WORKER * n_jobs:
                    job = pending.popleft()
                    inflight[ex.submit(_run_in_worker, job)] = job
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for f in done:
                    job = inflight.pop(f)
                    try:
                        record(f.result())
                    except BrokenProcessPool:
                        lost.append(job)
                    except Exception as e:  # noqa: BLE001 - e.g. an outcome that cannot be pickled
                        record(Outcome(job.src, job.dst, False, error=f"{type(e).__name__}: {e}"))
            lost += inflight.values()  # a broken pool fails everything it still held
        # Any of the lost jobs may have killed the worker: rerun them one at a time to find out.
        _run_one_by_one(deque(lost), fn, record)


def _run_one_by_one(jobs: deque[Job], fn: Work, record: Callable[[Outcome], None]) -> None:
    """One worker, one job in flight: a death is then the fault of the job it was running."""
    from concurrent.futures.process import BrokenProcessPool

    while jobs:
        with _pool(1, fn) as ex:
            while jobs:
                job = jobs.popleft()
                try:
                    record(ex.submit(_run_in_worker, job).result())
                except BrokenProcessPool:
                    record(_died(job, "crash or out of memory while converting this file"))
                    break


# ---- a whole folder ---------------------------------------------------------------------------

@dataclass
class Report:
    """What a folder conversion did: per-file outcomes and how long it took."""

    results: list[Outcome]
    wall_s: float
    engine: str
    workers: int
    decode: bool = False
    stale_parts_removed: int = 0
    done: list[Outcome] = field(init=False)
    failed: list[Outcome] = field(init=False)
    skipped: int = field(init=False)

    def __post_init__(self) -> None:
        self.done = [r for r in self.results if r.ok and not r.skipped]
        self.failed = [r for r in self.results if not r.ok]
        self.skipped = sum(r.skipped for r in self.results)

    @property
    def megapixels(self) -> float:
        return sum(r.pixels for r in self.done) / 1e6

    @property
    def images_per_s(self) -> float:
        return len(self.done) / max(self.wall_s, 1e-9)

    @property
    def megapixels_per_s(self) -> float:
        return self.megapixels / max(self.wall_s, 1e-9)

    def table(self) -> str:
        """The end-of-run summary: one row per status, then the throughput line."""
        coded = sum((r.in_bytes if self.decode else r.out_bytes) for r in self.done)
        px = sum(r.pixels for r in self.done)
        rows = [f"{len(self.done)} converted, {self.skipped} skipped (valid output exists), "
                f"{len(self.failed)} failed",
                f"{'':10} {'files':>8} {'megapixels':>11} {'input bytes':>15} {'output bytes':>15} "
                f"{'bpp':>8} {'work s':>9}",
                f"{'converted':10} {len(self.done):>8,} {self.megapixels:>11.2f} "
                f"{sum(r.in_bytes for r in self.done):>15,} {sum(r.out_bytes for r in self.done):>15,} "
                f"{8 * coded / max(px, 1):>8.4f} {sum(r.seconds for r in self.done):>9.1f}",
                f"{'skipped':10} {self.skipped:>8,}   (a valid output already existed)",
                f"{'failed':10} {len(self.failed):>8,}",
                f"{'total':10} {len(self.results):>8,}"]
        who = f"{self.workers} {self.engine} worker{'s' if self.workers != 1 else ''}"
        rows.append(f"wall {self.wall_s:.1f} s with {who}: {self.images_per_s:.2f} images/s, "
                    f"{self.megapixels_per_s:.2f} MP/s (converted files)")
        if self.stale_parts_removed:
            rows.append(f"removed {self.stale_parts_removed} temp file(s) left by an interrupted run")
        return "\n".join(rows)


def run_folder(src: Path, dst: Path, decode: bool, fn: Work, out_suffix: str, jobs: int = 1,
               engine: str = "local", address: str | None = None, progress: bool = True) -> Report:
    """Convert every input under ``src`` into the mirrored tree under ``dst`` with ``fn``."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise UsageError("--address needs --engine ray")
    work = plan(src, dst, decode, out_suffix)
    if not work:
        raise UsageError(f"no {'.lic files' if decode else 'images'} found under {src}")
    from liccodec.fileio import check_writable

    state = State(dst)
    check_writable(state.path)  # an unwritable output folder stops the run before any coding
    state.attach(work)
    removed = remove_stale_parts(work, state=state.path)
    t0 = time.perf_counter()
    prog = Progress(len(work), progress, state=state)
    try:
        if engine == "ray":
            from liccodec.batch.ray import run_ray

            workers = run_ray(work, fn, prog, address=address, num_cpus=jobs)
        else:
            run(work, fn, jobs, prog)
            workers = jobs
    finally:
        prog.close()
        state.flush()
    return Report(prog.results, time.perf_counter() - t0, engine, workers, decode, removed)
