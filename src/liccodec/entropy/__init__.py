"""Entropy coding: rANS (constriction) over precomputed probability tables."""
from liccodec.entropy.tables import (StreamReader, StreamWriter, TableSet, gaussian_tables, min_stream_bits,
                                     scale_table)

__all__ = ["StreamReader", "StreamWriter", "TableSet", "gaussian_tables", "min_stream_bits", "scale_table"]
