"""Unsigned LEB128 ("varint") of the container's integer fields: 7 bits a byte, low bits
first, minimal length. The header's and the quality map's readers, which bound the length by
what their field allows, stay with their formats (``container.format``, ``container.qmap``);
:func:`decode` reads the varints inside a stream's own layout (``liccodec.residual``)."""
from __future__ import annotations

from liccodec.errors import FormatError


def encode(n: int) -> bytes:
    if not 0 <= n < 1 << 32:
        raise ValueError(f"{n} does not fit a varint field")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode(data: bytes, pos: int, what: str = "stream") -> tuple[int, int]:
    """The varint at ``data[pos:]`` (below 2^32, shortest form) and the position after it;
    anything else is a ``FormatError`` naming ``what``."""
    n = 0
    for i in range(5):
        if pos >= len(data):
            raise FormatError(f"{what} is truncated")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            if (b == 0 and i > 0) or n >= 1 << 32:
                raise FormatError(f"{what}: a varint is over-long or out of range")
            return n, pos
    raise FormatError(f"{what}: a varint is too long")
