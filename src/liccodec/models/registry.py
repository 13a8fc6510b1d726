"""The one registry: architecture name -> (class, config dataclass).

Weight sets (``arch.tag``) are listed in the manifest under ``models/`` at the top of the
repository and resolved by ``liccodec.weights``; both the CLI and the container read model
identities from here, never from a position in a dict.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    name: str
    factory: Callable[..., nn.Module]   # factory(config, inference=bool)
    config_cls: type
    summary: str

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


def register_arch(spec: ArchSpec) -> ArchSpec:
    if spec.name in _ARCHS:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    if "." in spec.name:
        raise ValueError("architecture names may not contain '.' (reserved for arch.tag)")
    _ARCHS[spec.name] = spec
    return spec


def get_arch(name: str) -> ArchSpec:
    _load_builtin()
    try:
        return _ARCHS[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(_ARCHS)}") from None


def list_archs() -> list[str]:
    _load_builtin()
    return sorted(_ARCHS)


_loaded = False


def _load_builtin() -> None:
    # Deferred so that importing liccodec does not import torch models eagerly.
    global _loaded
    if _loaded:
        return
    _loaded = True
    from liccodec.models import minnen2018, minnen2020

    register_arch(ArchSpec(
        "msh", minnen2018.MeanScaleHyperprior, minnen2018.MshConfig,
        "mean-scale hyperprior (Minnen 2018, no context) + gain units (Cui 2021)",
    ))
    register_arch(ArchSpec(
        "charm", minnen2020.ChannelConditionalCodec, minnen2020.CharmConfig,
        "msh with a channel-conditional entropy model (Minnen & Singh 2020, no LRP)",
    ))
