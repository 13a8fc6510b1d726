"""Unsigned LEB128 ("varint") of the container's integer fields: 7 bits a byte, low bits
first, minimal length. The readers, which bound the length by what their field allows, stay
with their formats (``container.format``, ``container.qmap``)."""
from __future__ import annotations


def encode(n: int) -> bytes:
    if not 0 <= n < 1 << 32:
        raise ValueError(f"{n} does not fit a varint field")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
