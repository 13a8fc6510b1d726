"""The .lic container (spec: docs/format.md)."""
from liccodec.container.format import (
    FORMAT_MAJOR, FORMAT_MINOR, MAGIC, MAX_PIXELS, MAX_SIDE, Header, Mode, pack, unpack, read_header,
)

__all__ = ["FORMAT_MAJOR", "FORMAT_MINOR", "MAGIC", "MAX_PIXELS", "MAX_SIDE", "Header", "Mode",
           "pack", "unpack", "read_header"]
