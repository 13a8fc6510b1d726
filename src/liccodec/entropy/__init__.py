"""Entropy coding: rANS (constriction) over precomputed probability tables."""
from liccodec.entropy.tables import (StreamReader, StreamWriter, TableSet, gaussian_tables, min_stream_bits,
                                     reader_of, scale_table, streams_of)

__all__ = ["StreamReader", "StreamWriter", "TableSet", "gaussian_tables", "min_stream_bits", "reader_of",
           "scale_table", "streams_of"]
