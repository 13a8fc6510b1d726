"""Folder conversion on Ray (https://docs.ray.io): ``lic encode DIR -o OUT --engine ray``.

Each file is one Ray task running the same per-file function as the local engine, so the
outputs are the same files. Without ``--address`` a local Ray instance is started with
``--jobs`` CPUs and stopped at the end; with one (``auto``, ``HOST:PORT`` of a running
cluster, or ``ray://HOST:10001`` for Ray Client) the cluster's CPUs are used and it is
left running. Tasks read and write the paths they are given, so on a cluster every node
must see the input and output folders at the same paths (a shared file system) and have
liccodec and the same weights installed; see docs/batch.md.

Only a bounded number of tasks is in flight (two per CPU of the cluster), so a folder of
millions of files costs the driver a list of paths, not millions of pending tasks.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from liccodec.errors import UsageError

if TYPE_CHECKING:
    from liccodec.batch import Job, Outcome, Progress, Work

TASKS_PER_CPU = 2
#: Object store of a local instance: results are a few hundred bytes, so keep it small.
LOCAL_OBJECT_STORE_BYTES = 256 << 20


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'liccodec[ray]'") from None
    return ray


def _convert(fn: "Work", job: "Job", threads: int) -> "Outcome":
    """The Ray task: one file, with ``threads`` torch threads (its CPU reservation)."""
    from liccodec.batch import set_threads

    set_threads(threads)
    return fn(job)


def _env_vars() -> dict[str, str]:
    # The workers of a cluster do not inherit the driver's environment: pass liccodec's own
    # settings (weights folder, precision, tiling) explicitly.
    return {k: v for k, v in os.environ.items() if k.startswith("LICCODEC_")}


def run_ray(jobs: list["Job"], fn: "Work", progress: "Progress", address: str | None = None,
            num_cpus: int = 1, threads_per_task: int = 1) -> int:
    """Run ``fn`` over ``jobs`` as Ray tasks; outcomes go to ``progress``. Returns the CPUs used."""
    from liccodec.batch import pipe_errors_as_exceptions

    with pipe_errors_as_exceptions():
        return _run(jobs, fn, progress, address, num_cpus, threads_per_task)


def _run(jobs: list["Job"], fn: "Work", progress: "Progress", address: str | None, num_cpus: int,
         threads_per_task: int) -> int:
    from liccodec.batch import Outcome

    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": _env_vars()}}
        if address is None:  # a private local instance for this run
            kwargs.update(num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                          include_dashboard=False, logging_level="warning", log_to_driver=False)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {e}") from None
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=threads_per_task, max_retries=1)(_convert)
        fn_ref = ray.put(fn)
        window = TASKS_PER_CPU * max(1, cpus // threads_per_task)
        todo = iter(jobs)
        inflight: dict[Any, Job] = {}
        while True:
            for job in todo:
                inflight[task.remote(fn_ref, job, threads_per_task)] = job
                if len(inflight) >= window:
                    break
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                job = inflight.pop(ref)
                try:
                    progress.record(ray.get(ref))
                except Exception as e:  # noqa: BLE001 - a task that died (after its retry) fails one file
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    progress.record(Outcome(job.src, job.dst, False, error=f"Ray task failed: {type(e).__name__}: {msg}"))
        return cpus
    finally:
        if started:
            ray.shutdown()
