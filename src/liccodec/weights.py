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
    # synthesis behind charm.mse's encoder); the rest of its tensors come from the base
    base: str = ""
    folder: str = ""            # the models folder whose manifest lists it ("": models_dir())

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
        return self.path.is_file() and (not self.base or self.base_spec.available)

    @property
    def digest(self) -> bytes:
        from liccodec.container import DIGEST_BYTES

        return bytes.fromhex(self.sha256)[:DIGEST_BYTES]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "arch": self.arch, "sha256": self.sha256, "available": self.available,
                "quality_min": self.quality_min, "quality_max": self.quality_max,
                "quality_default": self.quality_default, "metric": self.metric,
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
        specs[mid] = WeightSpec(mid, e["arch"], e["config"], e["file"], e["sha256"], q["min"], q["max"],
                                q["default"], e.get("metric", "mse"), e.get("description", ""),
                                e.get("training", {}), e.get("base", ""), str(folder))
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
    """Raise ``ModelError`` unless the weights file is present with the manifest's sha256.
    Every loader (the torch models, the numpy decoder) calls this before reading a tensor."""
    if not spec.available:
        raise ModelError(f"weights file for {spec.id} not found at {spec.path}")
    actual = sha256_file(spec.path)
    if actual != spec.sha256:
        raise ModelError(f"weights {spec.path} have sha256 {actual[:16]}..., manifest says {spec.sha256[:16]}...")


def read_tensors(spec: WeightSpec, framework: str = "pt", prefixes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The tensors of a shipped model (those whose names start with one of ``prefixes``, or
    all), every file read verified against its sha256 first. A model with a ``base`` takes
    its tensors from the base and then its own file, which overrides them."""
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    base = spec.base_spec
    if base is not None:
        if base.base or (base.arch, base.config) != (spec.arch, spec.config):
            raise ModelError(f"{spec.id}'s base {base.id} must be a plain model of the same architecture and config")
        tensors = read_tensors(base, framework, prefixes)
    verify(spec)
    with safe_open(spec.path, framework) as f:
        tensors.update({k: f.get_tensor(k) for k in f.keys() if not prefixes or k.startswith(prefixes)})
    return tensors


@lru_cache(maxsize=4)
def _load(spec: WeightSpec, path: str):
    from liccodec.models import get_arch

    model = get_arch(spec.arch).build(inference=True, **spec.config)
    model.load_tensors(read_tensors(spec))
    model.eval()
    model.spec = spec
    return model
