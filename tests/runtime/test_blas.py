"""numpy's BLAS through ctypes: the kernel and thread count the numpy coders run with."""
import os
import subprocess
import sys

import pytest

from liccodec.eval.bench import threads_limited
from liccodec.runtime import blas

openblas = pytest.mark.skipif(blas.info() is None, reason="numpy does not link OpenBLAS here")


@openblas
def test_info_names_the_kernel_and_threads():
    i = blas.info()
    assert i["library"] == "OpenBLAS" and i["core"] and i["threads"] >= 1
    assert i["forced_core"] == (os.environ.get("OPENBLAS_CORETYPE") or None)
    assert i["core"] in blas.describe()


@openblas
def test_set_threads_round_trips():
    old = blas.get_threads()
    try:
        assert blas.set_threads(1) and blas.get_threads() == 1
    finally:
        blas.set_threads(old)
    assert blas.get_threads() == old


@openblas
def test_threads_limited_reaches_blas_and_restores():
    old = blas.get_threads()
    with threads_limited(1):
        assert blas.get_threads() == 1
    assert blas.get_threads() == old


@openblas
def test_a_kernel_named_in_the_environment_is_reported_as_forced():
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", "from liccodec.runtime import blas; print(blas.describe())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert "forced by OPENBLAS_CORETYPE=Haswell" in out


def test_without_openblas_nothing_is_set(monkeypatch):
    blas._openblas.cache_clear()
    monkeypatch.setattr(blas, "_candidates", lambda: [])
    try:
        assert blas.info() is None and blas.get_threads() is None and blas.set_threads(1) is False
        assert "not OpenBLAS" in blas.describe()
    finally:
        blas._openblas.cache_clear()
