"""Export a training checkpoint to shipped weights: safetensors + manifest entry.

The exported file holds the float transforms (EMA weights), the integer hyper-synthesis,
fixed-point medians and gains, and the coding tables; no optimizer state.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from liccodec.models import get_arch
from liccodec.weights import sha256_file


def model_from_checkpoint(path: str | Path, use_ema: bool = True):
    from liccodec.train.loop import load_checkpoint

    ck = load_checkpoint(path, "cpu")
    model_cfg = dict(ck["recipe"]["model"])
    arch = model_cfg.pop("arch")
    model = get_arch(arch).build(**model_cfg)
    model.load_state_dict(ck["ema" if use_ema else "model"])
    return model.eval(), arch, model_cfg, ck


def hardware() -> str:
    """CPU model (or CUDA device), threads, and whether bf16 was native."""
    from liccodec.eval.environment import cpu_model
    from liccodec.nn.layers import native_bf16

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    bf16 = "native bf16" if native_bf16() else "no native bf16"
    return f"{cpu_model()}, {torch.get_num_threads()} threads, {bf16}"


def _training_record(weights: Path) -> dict[str, Any]:
    """The manifest's training record of shipped weights (the start of a warm-started run)."""
    manifest = weights.parent / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text())["models"].values():
            if entry["file"] == weights.name:
                return {**entry["training"], "sha256": entry["sha256"]}
    return {"weights": str(weights), "note": "no manifest entry found"}


def chain_stages(before: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    """Training record of a run warm-started from weights trained as ``before``: totals on
    top, every stage listed in order."""
    *earlier, last = before.get("stages", [before])
    if "sha256" in before:  # the hash of the weights ``before`` describes: its last stage's result
        last = {**last, "sha256": before["sha256"]}
    stages = [*earlier, last, stage]
    return {**{k: v for k, v in stage.items() if k not in ("steps", "wall_clock_hours")},
            "steps": sum(s.get("steps", 0) for s in stages),
            "wall_clock_hours": round(sum(s.get("wall_clock_hours", 0.0) for s in stages), 2),
            "stages": stages}


def export(checkpoint: str | Path, model_id: str, out_dir: str | Path, *, description: str = "",
           recipe_file: str | None = None, extra: dict[str, Any] | None = None, base: str = "",
           metric: str = "mse") -> Path:
    """Export the EMA weights of a training checkpoint (see :func:`export_module`)."""
    model, arch, cfg, ck = model_from_checkpoint(checkpoint)
    st = ck["state"]
    training = {"hardware": hardware(), "recipe": recipe_file, "steps": st["step"],
                "wall_clock_hours": round(st["wall"] / 3600, 2), "ema": True, **(extra or {})}
    tc = ck["recipe"]["train"]
    if tc.get("teacher") and max(tc.get(k, 0.0) for k in ("distill_y", "distill_x", "distill_entropy")) > 0:
        training["teacher"] = {"weights": tc["teacher"], "sha256": ck.get("teacher_sha256"),
                               **{k: tc[k] for k in ("distill_y", "distill_x", "distill_entropy")}}
    init = tc.get("init")
    if init:
        training = chain_stages(_training_record(Path(init)), training)
    return export_module(model, arch, cfg, model_id, out_dir, description=description, training=training,
                         base=base, metric=metric)


def _sort_metadata(path: Path) -> None:
    """Write the safetensors header's metadata in sorted order, in place.

    safetensors keeps the metadata in a hash map whose order changes from run to run, so the
    same tensors would give files with different sha256s; sorted, an export is reproducible
    byte for byte. The header keeps its length (same JSON, compact, space-padded)."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        header = json.loads(raw)
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > n:
            raise ValueError(f"{path}: safetensors header does not round-trip")
        f.seek(8)
        f.write(text.ljust(n, b" "))


def _difference(tensors: dict[str, torch.Tensor], base: str, model_id: str,
                out_dir: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors that are new or differ from the shipped model ``base`` (listed in
    ``out_dir``, assembled over its own bases), and the base's sha256.

    The base need not be of the same architecture: it fits when each of its tensors is one
    this model exports, with the same dtype (charm under icisp, whose blocks it lacks);
    integer tensors of another integer dtype (int16 weights over a base written with int32)
    are compared and kept in the base's. A tensor whose shape differs from the base's (a
    slice network that reads more context, as dcae's) is stored whole, and the loaders take
    it over the base's. A base tensor this model lacks would leave the loaders a tensor the
    model does not have, so such a base is refused."""
    from liccodec.weights import base_chain, read_manifest, read_tensors

    specs = read_manifest(out_dir)
    if base not in specs:
        raise ValueError(f"base model {base!r} is not in {out_dir / 'manifest.json'}")
    spec = specs[base]
    chain = [s.id for s in base_chain(spec)]
    if model_id in chain:
        raise ValueError(f"{model_id} cannot be exported over {base}: its bases would form a cycle: "
                         + " -> ".join([model_id, *chain[:chain.index(model_id) + 1]]))
    ref = read_tensors(spec)
    for k in sorted(ref):
        r, v = ref[k], tensors.get(k)
        if v is not None and v.dtype != r.dtype and not v.is_floating_point() and not r.is_floating_point():
            # integer weights written int16 since session 20 over a base written int32: compare
            # and store them as the base has them, so a delta never mixes the two
            v = tensors[k] = v.to(r.dtype)
        if v is None:
            raise ValueError(f"base model {base!r} does not fit: its tensor {k!r} is not one this model exports")
        if v.dtype != r.dtype:
            raise ValueError(f"base model {base!r} does not fit: its tensor {k!r} is {tuple(r.shape)} {r.dtype}, "
                             f"this model's {tuple(v.shape)} {v.dtype}")
    return {k: v for k, v in tensors.items()
            if k not in ref or ref[k].shape != v.shape or not torch.equal(ref[k], v)}, spec.sha256


def _plain(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def export_module(model, arch: str, cfg: dict[str, Any], model_id: str, out_dir: str | Path, *,
                  description: str = "", training: dict[str, Any] | None = None, base: str = "",
                  metric: str = "mse") -> Path:
    """Write ``<out_dir>/<model_id>.safetensors`` and its entry in ``<out_dir>/manifest.json``.

    With ``base`` (a model in ``out_dir`` each of whose tensors this model exports with the
    same dtype: the same architecture and config, or one this architecture extends), the file holds only the tensors that are new or differ from it, and the entry
    names the base (and its sha256) to take the rest from. The base may have a base itself."""
    from safetensors.torch import save_file

    if not model_id.startswith(arch + "."):
        raise ValueError(f"model id {model_id!r} must start with the architecture name {arch!r}")
    tensors = {k: v.contiguous() for k, v in model.export_tensors().items()}
    out_dir = Path(out_dir)
    metadata = {"model_id": model_id, "arch": arch, "config": json.dumps(cfg)}
    base_sha256 = ""
    if base:
        tensors, base_sha256 = _difference(tensors, base, model_id, out_dir)
        metadata["base"] = base  # so that a delta file read without its manifest is refused
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model_id}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    _sort_metadata(tmp)
    os.chmod(tmp, 0o644)  # safetensors writes its files readable by their owner alone
    os.replace(tmp, path)
    q_min, q_max, q_default = model.quality_range()
    entry = {
        "arch": arch,
        "config": _plain(cfg),
        **({"base": base, "base_sha256": base_sha256} if base else {}),
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "quality": {"min": q_min, "max": q_max, "default": q_default},
        "metric": metric,
        "description": description,
        "licence": "weights: Apache-2.0 (this project); trained on research-only data, see training.data",
        "training": {
            "hardware": hardware(),
            "data": "shared/data/train: 724 photos (BSDS500, Urban100, Sun-Hays80, Wikipedia photos); "
                    "research/non-commercial terms for BSDS500, see its README",
            **(training or {}),
        },
    }
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"format": 1, "models": {}}
    manifest["models"][model_id] = entry
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, manifest_path)
    return path
