"""Reusable layers."""
from liccodec.nn.layers import (GDN, GainUnits, conv, correction_net, deconv, lower_bound, ste_round,
                               transform_precision)

__all__ = ["GDN", "GainUnits", "conv", "correction_net", "deconv", "lower_bound", "ste_round", "transform_precision"]
