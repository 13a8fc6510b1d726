"""Hostile .lic files for tests: the container written field by field, with none of the
writer's checks, the way an attacker's tool would (docs/format.md, "Layout")."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, replace

from liccodec.container import unpack


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def reseal(body: bytes) -> bytes:
    """``body`` (a file without its checksum) with a valid CRC-32 appended."""
    return body + struct.pack("<I", zlib.crc32(body))


@dataclass
class Forged:
    model: bytes = b"msh.tiny"
    digest: bytes = bytes(8)
    width: int = 64
    height: int = 64
    mode: int = 0
    depth: int = 8
    quality: int = 1000
    flags: int = 0
    streams: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(b"ans", b"\x01\x00\x00\x00")])
    major: int = 2
    minor: int = 0

    @classmethod
    def of(cls, data: bytes) -> "Forged":
        """The fields of a real file, to change one at a time."""
        h, s = unpack(data)
        return cls(h.model_id.encode(), h.digest, h.width, h.height, int(h.mode), h.bit_depth, h.quality,
                   h.flags, [(k.encode(), v) for k, v in s.items()], h.major, h.minor)

    def but(self, **changes) -> "Forged":
        return replace(self, **changes)

    def bytes(self) -> bytes:
        body = bytes([len(self.model)]) + self.model + self.digest + varint(self.width) + varint(self.height)
        body += bytes([self.mode, self.depth]) + varint(self.quality) + bytes([self.flags, len(self.streams)])
        for name, data in self.streams:
            body += bytes([len(name)]) + name + varint(len(data))
        out = b"\x89LIC" + bytes([self.major, self.minor]) + varint(len(body)) + body
        return reseal(out + b"".join(d for _, d in self.streams))


def peak_growth(fn) -> tuple[object, int]:
    """(fn's result or the exception it raised, how far the process's peak RSS rose above
    its RSS before, in bytes). Linux resets the peak through /proc/self/clear_refs; elsewhere
    the peak of Python and numpy allocations (tracemalloc) stands in."""
    def rss(field: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before, traced = rss("VmRSS:"), False
    except OSError:
        import tracemalloc
        tracemalloc.start()
        traced = True
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 -- handed back to the caller to judge
        out = e
    if traced:
        import tracemalloc
        growth = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        growth = rss("VmHWM:") - before
    return out, growth
