"""What machine and which library versions a measurement ran on (recorded in every report)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name with its family and model numbers, from /proc/cpuinfo where
    there is one: virtual machines often report only "AMD EPYC", and the family/model pair
    is what tells a Zen 3 from a Zen 4."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip().lower(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return None


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and numpy's BLAS (its kernel decides the numpy coders'
    speed), as plain JSON-able values."""
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    la = load_average()
    from liccodec.runtime import blas

    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "usable_cores": usable_cores(),
            "memory_gib": mem_gib, "os": platform.platform(), "python": sys.version.split()[0],
            "blas": blas.describe(), "load_average": [round(x, 2) for x in la] if la else None}


def library_versions() -> dict[str, str]:
    """Versions of every library the evaluation may use (absent ones are left out)."""
    from PIL import features

    import liccodec

    out: dict[str, str] = {"liccodec": liccodec.__version__}
    for dist in ("pillow", "numpy", "scipy", "torch", "pytorch-msssim", "matplotlib",
                 "pillow-jxl-plugin"):
        v = _dist_version(dist)
        if v:
            out[dist] = v
    turbo = features.version_feature("libjpeg_turbo")
    if turbo:
        out["libjpeg-turbo"] = turbo
    for label, kind, key in (("libwebp", "module", "webp"), ("libavif", "module", "avif"),
                             ("openjpeg", "codec", "jpg_2000")):
        v = features.version_module(key) if kind == "module" else features.version_codec(key)
        if v:
            out[label] = v
    if features.check_module("avif"):
        from PIL import _avif

        for part in _avif.codec_versions().split(", "):  # "dav1d [dec]:1.5.3, aom [enc]:3.14.1"
            name, _, ver = part.partition(":")
            out[name.split(" [")[0]] = ver.split("-")[0]
    if "pillow-jxl-plugin" in out:
        from liccodec.eval.classical import _libjxl_version

        out["libjxl"] = _libjxl_version()
    from liccodec.eval.classical import _ffmpeg_with_x265

    if _ffmpeg_with_x265():
        out["ffmpeg"] = "on PATH, with libx265"
    return out
