"""The .lic container (spec: docs/format.md)."""
from liccodec.container.format import (
    CAPTION_MINOR, DIGEST_BYTES, FORMAT_MAJOR, FORMAT_MINOR, MAGIC, MAJORS, MAX_PIXELS, MAX_SIDE, QMAP_MAJOR, RESIDUAL_MAJOR,
    RESIDUAL_MAJORS, RESIDUAL_STREAM, RESIDUAL_TOP_MAJOR, Header, Mode, pack,
    unpack, read_header,
)
from liccodec.container.caption import CAPTION_STREAM
from liccodec.container.qmap import QMAP_STREAM, QualityMap

__all__ = ["CAPTION_MINOR", "CAPTION_STREAM", "DIGEST_BYTES", "FORMAT_MAJOR", "FORMAT_MINOR", "MAGIC", "MAJORS", "MAX_PIXELS", "MAX_SIDE", "QMAP_MAJOR",
           "QMAP_STREAM", "RESIDUAL_MAJOR", "RESIDUAL_MAJORS", "RESIDUAL_STREAM", "RESIDUAL_TOP_MAJOR", "Header", "Mode", "QualityMap",
           "pack", "unpack", "read_header"]
