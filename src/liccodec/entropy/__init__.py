"""Entropy coding: rANS (constriction) over precomputed probability tables."""
from liccodec.entropy.tables import StreamReader, StreamWriter, TableSet, gaussian_tables, scale_table

__all__ = ["StreamReader", "StreamWriter", "TableSet", "gaussian_tables", "scale_table"]
