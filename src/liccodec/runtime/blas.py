"""The BLAS that numpy links, reached through ctypes: which kernel it runs and how many
threads it uses.

The numpy coders spend most of their time in that BLAS's matrix products, so both settings
decide their speed. OpenBLAS, which numpy's wheels bundle, picks a kernel for the CPU when it
loads, unless ``OPENBLAS_CORETYPE`` names one, and reads its thread count from the
environment once, at load. torch.set_num_threads does not reach it. So a worker process
that imports numpy before it is told its share of the cores would run as many BLAS threads
as the machine has cores, and a kernel named in the environment can run the products at half
the speed the CPU allows (docs/speed.md, "Session 25").

Only OpenBLAS is known here; with another BLAS (MKL, Accelerate) ``info`` returns None and
``set_threads`` does nothing.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

#: symbol suffixes of OpenBLAS builds: numpy's wheels use the 64-bit-integer one
_SUFFIXES = ("64_", "")


def _candidates() -> list[str]:
    """Paths of OpenBLAS libraries: the ones this process has loaded (Linux), then the copy
    bundled with numpy's wheel."""
    import numpy

    loaded: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.split(maxsplit=5)[-1].strip()
                if "openblas" in path.lower() and path.startswith("/") and path not in loaded:
                    loaded.append(path)
    except OSError:
        pass
    root = Path(numpy.__file__).parent
    bundled = sorted(str(p) for p in [*root.parent.glob("numpy.libs/*openblas*"), *root.glob(".dylibs/*openblas*")])
    return loaded + [p for p in bundled if p not in loaded]


@lru_cache(maxsize=1)
def _openblas() -> tuple[ctypes.CDLL, str] | None:
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in _SUFFIXES:
            if hasattr(lib, "openblas_get_corename" + suffix) and hasattr(lib, "openblas_set_num_threads" + suffix):
                return lib, suffix
    return None


def _fn(name: str, restype=ctypes.c_int):
    found = _openblas()
    if found is None:
        return None
    lib, suffix = found
    fn = getattr(lib, name + suffix)
    fn.restype = restype
    return fn


def info() -> dict[str, Any] | None:
    """{"library", "core", "threads", "forced_core"} of numpy's OpenBLAS, or None for another
    BLAS. ``forced_core`` is ``OPENBLAS_CORETYPE`` when the environment sets it: the kernel
    was then named, not detected."""
    core, threads = _fn("openblas_get_corename", ctypes.c_char_p), _fn("openblas_get_num_threads")
    if core is None or threads is None:
        return None
    return {"library": "OpenBLAS", "core": (core() or b"?").decode(errors="replace"),
            "threads": int(threads()), "forced_core": os.environ.get("OPENBLAS_CORETYPE") or None}


def describe() -> str:
    """One line for reports: e.g. "OpenBLAS, Cooperlake kernels, 2 threads"."""
    i = info()
    if i is None:
        return "BLAS: not OpenBLAS (kernel and threads unknown)"
    forced = f" (forced by OPENBLAS_CORETYPE={i['forced_core']})" if i["forced_core"] else ""
    threads = f"{i['threads']} thread" + ("s" if i["threads"] != 1 else "")
    return f"OpenBLAS, {i['core']} kernels{forced}, {threads}"


def get_threads() -> int | None:
    fn = _fn("openblas_get_num_threads")
    return None if fn is None else int(fn())


def set_threads(n: int) -> bool:
    """Let numpy's matrix products use at most ``n`` threads; False where the BLAS is not
    OpenBLAS (nothing changed)."""
    fn = _fn("openblas_set_num_threads", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int]
    fn(max(1, int(n)))
    return True
