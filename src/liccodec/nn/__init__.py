"""Reusable layers."""
from liccodec.nn.layers import GDN, GainUnits, conv, deconv, lower_bound, ste_round

__all__ = ["GDN", "GainUnits", "conv", "deconv", "lower_bound", "ste_round"]
