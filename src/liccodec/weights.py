"""Shipped weights: the manifest, sha256 verification and loading.

Weights live in a ``models/`` folder next to ``manifest.json``. It is looked for in this
order: ``$LICCODEC_MODELS``; the ``models/`` folder of a source checkout (``pip install -e``);
``<prefix>/share/liccodec/models`` (where a regular ``pip install`` puts it). Nothing is
ever downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from liccodec.errors import ModelError

DEFAULT_MODEL = "charm.mse"  # what `lic encode` and liccodec.encode use without -m/model


def models_dir() -> Path:
    env = os.environ.get("LICCODEC_MODELS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "models",
                   Path(sys.prefix) / "share" / "liccodec" / "models"]
    for c in candidates:
        if (c / "manifest.json").is_file():
            return c
    return candidates[0]


@dataclass(frozen=True, eq=False)
class WeightSpec:
    id: str                     # "arch.tag"
    arch: str
    config: dict[str, Any]
    file: str
    sha256: str
    quality_min: float
    quality_max: float
    quality_default: float
    metric: str = "mse"
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    # a model whose file holds only what differs from this shipped model (e.g. a perceptual
    # synthesis behind charm.mse's encoder, or an architecture that extends charm); the rest
    # of its tensors come from the base, which may itself have a base (:func:`base_chain`)
    base: str = ""
    base_sha256: str = ""       # the base's sha256 at export ("": not recorded, not checked)
    folder: str = ""            # the models folder whose manifest lists it ("": models_dir())
    # qualities above this one add a residual layer over the latents coded at it (format 5.0,
    # liccodec.residual); None: the top level (manifest "quality": {"residual_from": ...})
    residual_from: float | None = None

    def __hash__(self) -> int:
        return hash((self.id, self.sha256))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeightSpec) and (self.id, self.sha256) == (other.id, other.sha256)

    @property
    def path(self) -> Path:
        return Path(self.folder or models_dir()) / self.file

    @property
    def base_spec(self) -> "WeightSpec | None":
        """The model this one's file completes, from the same manifest (None: a plain model)."""
        if not self.base:
            return None
        specs = read_manifest(Path(self.folder) if self.folder else None)
        if self.base not in specs:
            raise ModelError(f"{self.id} is built on {self.base!r}, which the manifest does not list")
        return specs[self.base]

    @property
    def available(self) -> bool:
        """Whether its file and those of all its bases are there (sha256 not checked)."""
        try:
            return all(s.path.is_file() for s in base_chain(self))
        except ModelError:
            return False

    @property
    def digest(self) -> bytes:
        from liccodec.container import DIGEST_BYTES

        return bytes.fromhex(self.sha256)[:DIGEST_BYTES]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "arch": self.arch, "sha256": self.sha256, "available": self.available,
                "quality_min": self.quality_min, "quality_max": self.quality_max,
                "quality_default": self.quality_default,
                "residual_from": self.quality_max if self.residual_from is None else self.residual_from,
                "metric": self.metric,
                "description": self.description, "base": self.base}


def read_manifest(folder: Path | None = None) -> dict[str, WeightSpec]:
    folder = folder or models_dir()
    path = folder / "manifest.json"
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    specs = {}
    for mid, e in raw["models"].items():
        if mid in specs:
            raise ModelError(f"duplicate model id {mid!r} in {path}")
        q = e["quality"]
        rf = q.get("residual_from")
        if rf is not None and not q["min"] <= rf <= q["max"]:
            raise ModelError(f"{mid}: quality.residual_from {rf} is outside its levels [{q['min']}, {q['max']}]")
        specs[mid] = WeightSpec(mid, e["arch"], e["config"], e["file"], e["sha256"], q["min"], q["max"],
                                q["default"], e.get("metric", "mse"), e.get("description", ""),
                                e.get("training", {}), base=e.get("base", ""),
                                base_sha256=e.get("base_sha256", ""), folder=str(folder), residual_from=rf)
    return specs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_spec(model_id: str) -> WeightSpec:
    specs = read_manifest()
    if model_id not in specs:
        known = ", ".join(sorted(specs)) or "none (no manifest found)"
        raise ModelError(f"unknown model {model_id!r}; shipped models: {known}")
    return specs[model_id]


def load_model(model_id: str):
    """Build the architecture, verify the weights' sha256, load them; returns the module."""
    spec = get_spec(model_id)
    return _load(spec, str(spec.path))


def verify(spec: WeightSpec) -> None:
    """Raise ``ModelError`` unless the weights file is present with the manifest's sha256."""
    _verified_bytes(spec)


def _verified_bytes(spec: WeightSpec) -> bytes:
    """The weights file's contents, read once and checked against the manifest's sha256:
    every loader (the torch models, the numpy coders) parses the very bytes it verified."""
    if not spec.path.is_file():
        raise ModelError(f"weights file for {spec.id} not found at {spec.path}")
    data = spec.path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise ModelError(f"weights {spec.path} have sha256 {actual[:16]}..., manifest says {spec.sha256[:16]}...")
    return data


#: safetensors dtype names -> numpy dtypes (little-endian, as the format stores them)
_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
           "U8": "u1", "BOOL": "?"}


def safetensors_arrays(data: bytes, name: str = "weights", prefixes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The tensors of a safetensors file's bytes (those whose names start with one of
    ``prefixes``, or all) as read-only numpy views into ``data``: no copy. The format is an
    8-byte little-endian header length, a JSON header of name -> dtype, shape and byte range,
    then the tensor bytes. safetensors' own ``load(bytes)`` copies every tensor: measured
    against reading the file twice (hash, then safetensors), it loaded charm.mse's numpy decoder
    in 108 ms against 91, and these views in 88 against 94 (two runs of docs/speed/startup.py,
    session 26)."""
    import numpy as np

    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        body = memoryview(data)[8 + n:]
        out = {}
        for k, e in header.items():
            if k == "__metadata__" or (prefixes and not k.startswith(prefixes)):
                continue
            dtype = np.dtype(_DTYPES[e["dtype"]])
            start, end = e["data_offsets"]
            count = int(np.prod(e["shape"], dtype=np.int64))
            if not 0 <= start <= end <= len(body) or end - start != count * dtype.itemsize:
                raise ValueError(f"tensor {k} has byte range {start}..{end} for {count} values of {e['dtype']}")
            out[k] = np.frombuffer(body[start:end], dtype).reshape(e["shape"])
        return out
    except (KeyError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ModelError(f"{name} is not a safetensors file liccodec can read: {e}") from None


def base_chain(spec: WeightSpec) -> list[WeightSpec]:
    """``spec`` and the models its tensors are assembled from, nearest first: its base, that
    one's base, and so on (a plain model: ``[spec]``). A base may be of another architecture
    (every one of its tensors is also one of ``spec``'s, which the export checks). Raises
    ``ModelError`` for a base the manifest does not list, a base whose sha256 is not the one
    recorded at export (it was re-exported since), and a cycle."""
    chain = [spec]
    while chain[-1].base:
        top = chain[-1]
        base = top.base_spec
        if any(s.id == base.id for s in chain):
            raise ModelError(f"the bases of {spec.id} form a cycle: "
                             + " -> ".join(s.id for s in (*chain, base)))
        if top.base_sha256 and top.base_sha256 != base.sha256:
            raise ModelError(f"{top.id} holds what differs from {base.id} as it was (sha256 "
                             f"{top.base_sha256[:16]}...), but the manifest lists {base.id} with sha256 "
                             f"{base.sha256[:16]}...; export {top.id} again over the new {base.id}")
        chain.append(base)
    return chain


def read_tensors(spec: WeightSpec, framework: str = "pt", prefixes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The tensors of a shipped model (those whose names start with one of ``prefixes``, or
    all), every file verified against its sha256 before any is read: numpy arrays (``"np"``,
    read-only views into the verified bytes) or torch tensors (``"pt"``). A model with a ``base``
    is assembled along :func:`base_chain`: the farthest base's tensors first, each nearer
    file's own tensors over them, its own file last."""
    chain = base_chain(spec)
    files = [_verified_bytes(spec)]
    for base in chain[1:]:
        try:
            files.append(_verified_bytes(base))
        except ModelError as e:
            raise ModelError(f"{spec.id} is built on {base.id}: {e}") from None
    tensors: dict[str, Any] = {}
    for s, data in reversed(list(zip(chain, files))):
        tensors.update(safetensors_arrays(data, str(s.path), prefixes))
    if framework == "pt":
        import torch

        return {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    return tensors


@lru_cache(maxsize=4)
def _load(spec: WeightSpec, path: str):
    from liccodec.models import get_arch

    model = get_arch(spec.arch).build(inference=True, **spec.config)
    try:
        model.load_tensors(read_tensors(spec))
    except KeyError as e:  # the strict load: the file (with its bases) is not this model's tensor set
        raise ModelError(f"{spec.id}: {e.args[0]}") from None
    model.eval()
    model.spec = spec
    return model
