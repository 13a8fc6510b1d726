"""The .lic container (spec: docs/format.md)."""
from liccodec.container.format import (
    DIGEST_BYTES, FORMAT_MAJOR, FORMAT_MINOR, MAGIC, MAX_PIXELS, MAX_SIDE, Header, Mode, pack, unpack, read_header,
)

__all__ = ["DIGEST_BYTES", "FORMAT_MAJOR", "FORMAT_MINOR", "MAGIC", "MAX_PIXELS", "MAX_SIDE", "Header", "Mode",
           "pack", "unpack", "read_header"]
