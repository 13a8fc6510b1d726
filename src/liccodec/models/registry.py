"""The one registry: architecture name -> (class, config dataclass, tiny test config).

An architecture is one module in ``liccodec.models`` whose class carries the decorator::

    @register_arch("msh", config=MshConfig, tiny=dict(N=8, M=12, lambdas=[...]),
                   summary="mean-scale hyperprior ...")
    class MeanScaleHyperprior(LearnedCodec): ...

Every module of the package is imported on the first look-up (``pkgutil``), so nothing else
lists architectures: the CLI, the container (model ids ``arch.tag``) and the tests (each
architecture's ``tiny`` config) all read this registry. Weight sets are listed in the
manifest under ``models/`` at the top of the repository and resolved by ``liccodec.weights``.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    name: str
    factory: Callable[..., nn.Module]   # factory(config, inference=bool)
    config_cls: type
    summary: str
    # a configuration small enough to build, train a step and code in milliseconds: what the
    # tests (tests/conftest.py, the contract test) run for every registered architecture
    tiny: Mapping[str, Any] = field(default_factory=dict)

    def config(self, **overrides: Any) -> Any:
        fields = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown {self.name} config keys: {sorted(unknown)}")
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        return self.config_cls(**clean)

    def build(self, inference: bool = False, **overrides: Any) -> nn.Module:
        """``inference=True`` leaves out the training-only parts (float h_s, density model)."""
        return self.factory(self.config(**overrides), inference=inference)


_ARCHS: dict[str, ArchSpec] = {}


def register_arch(name: str, *, config: type, summary: str,
                  tiny: Mapping[str, Any] | None = None) -> Callable[[type], type]:
    """Class decorator: register the model class under ``name``; a duplicate name raises."""
    def register(cls: type) -> type:
        _add(ArchSpec(name, cls, config, summary, dict(tiny or {})))
        return cls
    return register


def _add(spec: ArchSpec) -> None:
    if spec.name in _ARCHS:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    if "." in spec.name:
        raise ValueError("architecture names may not contain '.' (reserved for arch.tag)")
    spec.config(**spec.tiny)  # a tiny config that does not fit the dataclass fails here, not in a test
    _ARCHS[spec.name] = spec


def unregister_arch(name: str) -> None:
    """Remove an architecture (tests that register a toy one clean up with this)."""
    _ARCHS.pop(name, None)


def get_arch(name: str) -> ArchSpec:
    _discover()
    try:
        return _ARCHS[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(_ARCHS)}") from None


def list_archs() -> list[str]:
    _discover()
    return sorted(_ARCHS)


_discovered = False


def _discover() -> None:
    """Import every module of ``liccodec.models`` once: their decorators register them.

    Deferred to the first look-up so that importing liccodec does not import torch models."""
    global _discovered
    if _discovered:
        return
    import liccodec.models as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _discovered = True
