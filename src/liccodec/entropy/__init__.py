"""Entropy coding: rANS (constriction) over precomputed probability tables."""
from liccodec.entropy.tables import TableSet, gaussian_tables, scale_table

__all__ = ["TableSet", "gaussian_tables", "scale_table"]
