"""The .lic container (spec: docs/format.md)."""
from liccodec.container.format import (
    DIGEST_BYTES, FORMAT_MAJOR, FORMAT_MINOR, MAGIC, MAJORS, MAX_PIXELS, MAX_SIDE, QMAP_MAJOR, Header, Mode, pack,
    unpack, read_header,
)
from liccodec.container.qmap import QMAP_STREAM, QualityMap

__all__ = ["DIGEST_BYTES", "FORMAT_MAJOR", "FORMAT_MINOR", "MAGIC", "MAJORS", "MAX_PIXELS", "MAX_SIDE", "QMAP_MAJOR",
           "QMAP_STREAM", "Header", "Mode", "QualityMap",
           "pack", "unpack", "read_header"]
