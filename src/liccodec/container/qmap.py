"""The quality map of a .lic file: the quality each position of ``y`` was coded at.

Region-of-interest coding (docs/roi.md) scales ``y`` by the gain vector of a quality chosen
per latent position instead of one quality for the image. The decoder needs that choice to
apply the matching inverse gains, so a file that has one carries it in the stream ``qmap``
(format 3.0, docs/format.md "Quality map")::

    layout  u8       1
    count   varint   K, the number of distinct qualities, 2..256
    quality varint   K times: thousandths, strictly increasing
    indexes zlib     one index into the qualities per position of y (row-major, top-left
                     first), b bits each (b = 1, 2, 4 or 8: the fewest that hold K - 1),
                     most significant bit first, the last byte padded with zero bits

A binary mask at latent resolution (an ROI and its background) thus costs a bit per 16x16
pixels before deflate: 192 bytes for a 768x512 image, a few dozen after it.

Parsing is as strict as the rest of the container: every field in range, the index plane
inflates to exactly its size (never further: the inflation is bounded by the declared image
size), no padding bit set, no trailing data, every index below K. The qualities' range
depends on the model and is checked by the decoder (``liccodec.codec``).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from liccodec.container.varint import encode as _varint
from liccodec.errors import FormatError

QMAP_STREAM = "qmap"
LAYOUT = 1
MAX_QUALITIES = 256
MAX_QUALITY = 0xFFFF          # thousandths, as the header's quality field


def _bits(count: int) -> int:
    """Bits per index for ``count`` qualities: 1, 2, 4 or 8."""
    return next(b for b in (1, 2, 4, 8) if count <= 1 << b)


@dataclass(frozen=True)
class QualityMap:
    """Qualities (thousandths, strictly increasing, at least two) and, per position of y, the
    index of its quality: ``index`` is (h, w) uint8."""

    qualities: tuple[int, ...]
    index: np.ndarray

    def __post_init__(self) -> None:
        q = self.qualities
        if not 2 <= len(q) <= MAX_QUALITIES:
            raise ValueError(f"a quality map holds 2..{MAX_QUALITIES} qualities, got {len(q)}")
        if any(not 0 <= v <= MAX_QUALITY for v in q) or any(a >= b for a, b in zip(q, q[1:])):
            raise ValueError(f"qualities must increase strictly within 0..{MAX_QUALITY}: {q}")
        if self.index.ndim != 2 or self.index.dtype != np.uint8 or self.index.size == 0:
            raise ValueError("the index plane must be a non-empty 2-d uint8 array")
        if int(self.index.max()) >= len(q):
            raise ValueError("an index points past the qualities")

    @classmethod
    def of(cls, milli: np.ndarray) -> "QualityMap | None":
        """From a quality per position (thousandths, (h, w) integers); None when they are all
        equal (such an image is coded as a plain file at that quality)."""
        values, index = np.unique(np.asarray(milli, dtype=np.int64), return_inverse=True)
        if len(values) < 2:
            return None
        return cls(tuple(int(v) for v in values), index.reshape(np.shape(milli)).astype(np.uint8))

    @property
    def shape(self) -> tuple[int, int]:
        return self.index.shape

    def milli(self) -> np.ndarray:
        """The quality of every position, (h, w) int64 thousandths."""
        return np.asarray(self.qualities, dtype=np.int64)[self.index]

    def share(self) -> np.ndarray:
        """Fraction of the positions at each quality, in the order of :attr:`qualities`."""
        return np.bincount(self.index.ravel(), minlength=len(self.qualities)) / self.index.size

    def to_bytes(self) -> bytes:
        b = _bits(len(self.qualities))
        bits = np.unpackbits(self.index.reshape(-1, 1), axis=1)[:, 8 - b:]
        head = bytes([LAYOUT]) + _varint(len(self.qualities)) + b"".join(_varint(q) for q in self.qualities)
        return head + zlib.compress(np.packbits(bits.ravel()).tobytes(), 9)

    @classmethod
    def from_bytes(cls, data: bytes, shape: tuple[int, int]) -> "QualityMap":
        """Parse a ``qmap`` stream for y of ``shape`` (from the header's image size, checked
        before); every malformation is a ``FormatError``."""
        qualities, pos = _head(data)
        count = len(qualities)
        b, n = _bits(count), shape[0] * shape[1]
        size = -(-n * b // 8)
        d = zlib.decompressobj()
        try:
            raw = d.decompress(data[pos:], size + 1)  # bounded: never inflate past the plane
        except zlib.error as e:
            raise FormatError(f"quality-map indexes are corrupt: {e}") from None
        if len(raw) != size or not d.eof or d.unused_data:
            raise FormatError("quality-map indexes have the wrong size for the image")
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
        if bits[n * b:].any():
            raise FormatError("quality-map padding bits are set")
        weights = (1 << np.arange(b - 1, -1, -1)).astype(np.uint8)
        index = (bits[:n * b].reshape(n, b) * weights).sum(axis=1, dtype=np.uint16)
        if n and int(index.max()) >= count:
            raise FormatError("quality-map index out of range")
        return cls(qualities, index.astype(np.uint8).reshape(shape))

    @staticmethod
    def qualities_of(data: bytes) -> tuple[int, ...]:
        """The qualities of a ``qmap`` stream (thousandths) without its indexes (``lic info``)."""
        return _head(data)[0]


def _head(data: bytes) -> tuple[tuple[int, ...], int]:
    """A ``qmap`` stream's layout, count and qualities -> (qualities, offset of the indexes)."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        n = 0
        for i in range(3):  # every field is below 2**21
            if pos >= len(data):
                raise FormatError("quality-map stream is shorter than its fields")
            byte = data[pos]
            pos += 1
            n |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                if byte == 0 and i > 0:
                    raise FormatError("over-long varint in the quality map")
                return n
        raise FormatError("varint in the quality map is too long")

    if not data or data[0] != LAYOUT:
        raise FormatError(f"unknown quality-map layout {data[:1].hex() or 'none'} (this reader: {LAYOUT})")
    pos = 1
    count = varint()
    if not 2 <= count <= MAX_QUALITIES:
        raise FormatError(f"quality map with {count} qualities (2..{MAX_QUALITIES} allowed)")
    qualities = tuple(varint() for _ in range(count))
    if any(q > MAX_QUALITY for q in qualities) or any(a >= b for a, b in zip(qualities, qualities[1:])):
        raise FormatError("quality-map qualities out of range or not strictly increasing")
    return qualities, pos
