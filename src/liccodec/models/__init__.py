"""Architectures and the one registry of models (``arch.tag``)."""
from liccodec.models.registry import ArchSpec, get_arch, list_archs, register_arch, unregister_arch

__all__ = ["ArchSpec", "get_arch", "list_archs", "register_arch", "unregister_arch"]
