"""Reading and writing .lic files. docs/format.md is the normative description.

Layout (fixed-size integers little-endian; ``varint`` = unsigned LEB128, minimal length)::

    magic      4  b"\\x89LIC"
    major u8   minor u8
    header_len varint   bytes of the header fields that follow
    header     model id (u8 length + ASCII), weights digest (8 bytes), width varint,
               height varint, mode u8, bit depth u8, quality varint (thousandths), flags u8,
               stream count u8, then per stream: name (u8 length + ASCII), length varint
    streams    the stream payloads, concatenated in header order
    crc32      u32 over every byte before it

Version 2 differs from 1 in varints for the integers that vary from file to file and a
shorter digest; its latent codecs write one rANS stream where version 1 had one per latent.
A 768x512 ``charm`` file spends about 46 bytes outside its payloads instead of about 102.
Version 3 is version 2 plus a quality map (stream ``qmap``, ``container.qmap``), which
changes how the latents decode: a 2.x reader must refuse such a file, not ignore the
stream. A writer uses 3.0 only for files that have one, so every other file stays 2.0.
Minor version 1 (2.1, 3.1) adds a caption (stream ``caption``, ``container.caption``): a
description that a 2.0 reader may ignore (no model it knows reads it), and which a writer
puts in a file only when it has one, so files without a caption stay x.0.

A reader checks, in this order: minimum length, magic, major version, checksum (which
also catches truncation and trailing bytes), header syntax, declared limits, the stream set,
and that the declared stream lengths add up to the file. It never allocates from an
unchecked size, and it is exactly as strict as docs/format.md: whatever that page does not
allow is a ``FormatError``, so a name it returns is printable ASCII without spaces.
"""
from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, field

from liccodec.container.caption import CAPTION_STREAM
from liccodec.container.qmap import QMAP_STREAM
from liccodec.container.varint import encode as _varint
from liccodec.errors import ChecksumError, FormatError, VersionError

MAGIC = b"\x89LIC"
FORMAT_MAJOR = 2              # what a file is written as unless it needs a later major
FORMAT_MINOR = 0
CAPTION_MINOR = 1             # a file with a caption (stream "caption"): x.0 plus that stream
KNOWN_MINOR = CAPTION_MINOR   # the highest minor this reader knows every stream of
QMAP_MAJOR = 3                # a file with a quality map (stream "qmap"): 2.0 plus that stream
RESIDUAL_MAJOR = 5            # a file with a residual layer (stream "residual"): 2.0 plus that stream
RESIDUAL_TOP_MAJOR = 4        # read only: the same, its latents at the top level (liccodec 0.2, session 29)
RESIDUAL_MAJORS = (RESIDUAL_TOP_MAJOR, RESIDUAL_MAJOR)
RESIDUAL_STREAM = "residual"  # liccodec.residual: the qualities above the model's residual_from
MAJORS = (FORMAT_MAJOR, QMAP_MAJOR, RESIDUAL_TOP_MAJOR, RESIDUAL_MAJOR)
DIGEST_BYTES = 8              # of the weights file's sha256
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28          # 268 megapixels
MAX_STREAMS = 32
MAX_NAME = 64
MAX_VARINT_BYTES = 5          # every varint field is below 2**35; lengths below 2**32
# the streams of format 2.0 (3.0: and "qmap"; x.1: and "caption"); a file of a later minor
# version may add streams (ignored here)
STREAMS = ("ans", "esc", "alpha")
REQUIRED_STREAM = "ans"
ALPHA_STREAM = "alpha"
_PREAMBLE = struct.Struct("<4sBB")
_MIN_SIZE = _PREAMBLE.size + 1 + 4


class Mode(enum.IntEnum):
    RGB = 0
    L = 1
    RGBA = 2
    LA = 3

    @property
    def has_alpha(self) -> bool:
        return self in (Mode.RGBA, Mode.LA)


@dataclass
class Header:
    model_id: str
    digest: bytes                 # first DIGEST_BYTES bytes of the weights file's sha256
    width: int
    height: int
    mode: Mode = Mode.RGB
    bit_depth: int = 8
    quality: int = 4000           # thousandths
    flags: int = 0
    streams: dict[str, int] = field(default_factory=dict)   # name -> length (filled by pack)
    major: int = FORMAT_MAJOR
    minor: int = FORMAT_MINOR

    def to_dict(self) -> dict:
        return {"format_version": f"{self.major}.{self.minor}", "model": self.model_id,
                "weights_digest": self.digest.hex(), "width": self.width, "height": self.height,
                "mode": self.mode.name, "bit_depth": self.bit_depth, "quality": self.quality / 1000,
                "flags": self.flags, "streams": dict(self.streams)}


def _check_limits(h: Header) -> None:
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise FormatError(f"image size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    if h.width * h.height > MAX_PIXELS:
        raise FormatError(f"image of {h.width * h.height} pixels exceeds the limit of {MAX_PIXELS}")
    if h.bit_depth not in (8, 16):
        raise FormatError(f"unsupported bit depth {h.bit_depth}")
    if h.bit_depth == 16 and h.mode != Mode.L:
        raise FormatError(f"bit depth 16 with colour mode {h.mode.name} (only L has 16 bits)")
    if h.flags:
        raise FormatError(f"reserved flags are set ({h.flags:#04x})")


def _check_streams(h: Header) -> None:
    """Which streams a file holds, as docs/format.md says (lengths are checked elsewhere)."""
    names = list(h.streams)
    known = (STREAMS + ((QMAP_STREAM,) if h.major == QMAP_MAJOR else ())
             + ((RESIDUAL_STREAM,) if h.major in RESIDUAL_MAJORS else ())
             + ((CAPTION_STREAM,) if h.minor >= CAPTION_MINOR else ()))
    if h.minor <= KNOWN_MINOR:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise FormatError(f"unknown stream {unknown[0]!r} in a {h.major}.{h.minor} file")
    if REQUIRED_STREAM not in names:
        raise FormatError(f"missing stream {REQUIRED_STREAM!r}")
    if h.major == QMAP_MAJOR and QMAP_STREAM not in names:
        raise FormatError(f"a {h.major}.x file needs a {QMAP_STREAM!r} stream (one without is a 2.0 file)")
    if h.major in RESIDUAL_MAJORS and RESIDUAL_STREAM not in names:
        raise FormatError(f"a {h.major}.x file needs a {RESIDUAL_STREAM!r} stream (one without is a 2.0 file)")
    if h.minor == CAPTION_MINOR and CAPTION_STREAM not in names:
        raise FormatError(f"a {h.major}.{h.minor} file needs a {CAPTION_STREAM!r} stream "
                          f"(one without is a {h.major}.0 file)")
    if (ALPHA_STREAM in names) != h.mode.has_alpha:
        raise FormatError(f"colour mode {h.mode.name} " + ("needs an alpha stream" if h.mode.has_alpha
                                                           else "cannot have an alpha stream"))
    empty = [n for n, length in h.streams.items() if length == 0]
    if empty:
        raise FormatError(f"stream {empty[0]!r} is empty (an absent stream is left out)")


def _valid_name(b: bytes) -> bool:
    """1..MAX_NAME bytes of printable ASCII, no space (so that ``lic info`` can print it)."""
    return 0 < len(b) <= MAX_NAME and all(0x21 <= c <= 0x7E for c in b)


def _name(s: str) -> bytes:
    b = s.encode("ascii", "replace")
    if not _valid_name(b):
        raise ValueError(f"name {s!r} must be 1..{MAX_NAME} bytes of printable ASCII without spaces")
    return bytes([len(b)]) + b


def pack(header: Header, streams: dict[str, bytes]) -> bytes:
    """Serialize a header and its named streams into a complete .lic file: major 3 when the
    streams hold a quality map, 5 when they hold a residual layer, else 2; minor 1 when they hold a caption, else 0 (the lowest
    version that can hold them; the header's version fields are set accordingly)."""
    if QMAP_STREAM in streams and RESIDUAL_STREAM in streams:
        raise ValueError("a file holds a quality map or a residual layer, not both")
    header.major = (QMAP_MAJOR if QMAP_STREAM in streams else RESIDUAL_MAJOR if RESIDUAL_STREAM in streams
                    else FORMAT_MAJOR)
    header.minor = CAPTION_MINOR if CAPTION_STREAM in streams else FORMAT_MINOR
    _check_limits(header)
    if len(streams) > MAX_STREAMS:
        raise ValueError("too many streams")
    if len(header.digest) != DIGEST_BYTES:
        raise ValueError(f"digest must be {DIGEST_BYTES} bytes")
    if not 0 <= header.quality <= 0xFFFF:
        raise ValueError("quality out of range")
    header.streams = {k: len(v) for k, v in streams.items()}
    try:
        _check_streams(header)
    except FormatError as e:
        raise ValueError(str(e)) from None
    body = bytearray()
    body += _name(header.model_id) + header.digest
    body += _varint(header.width) + _varint(header.height)
    body += bytes([int(header.mode), header.bit_depth]) + _varint(header.quality)
    body += bytes([header.flags, len(streams)])
    for name, data in streams.items():
        body += _name(name) + _varint(len(data))
    out = bytearray(_PREAMBLE.pack(MAGIC, header.major, header.minor))
    out += _varint(len(body)) + body
    for data in streams.values():
        out += data
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


class _Reader:
    def __init__(self, buf: bytes, pos: int, end: int):
        self.buf, self.pos, self.end = buf, pos, end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise FormatError("header is shorter than its fields")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str) -> tuple:
        s = struct.Struct(fmt)
        return s.unpack(self.take(s.size))

    def varint(self) -> int:
        n = 0
        for i in range(MAX_VARINT_BYTES):
            (b,) = self.take(1)
            n |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                if b == 0 and i > 0:
                    raise FormatError("over-long varint in header")
                return n
        raise FormatError("varint in header is too long")

    def name(self) -> str:
        (n,) = self.unpack("<B")
        b = self.take(n)
        if not _valid_name(b):
            raise FormatError(f"name {b!r} in header is not 1..{MAX_NAME} bytes of printable ASCII")
        return b.decode("ascii")


def _parse(data: bytes, verify: bool) -> tuple[Header, int]:
    if len(data) < 4 or data[:4] != MAGIC:
        raise FormatError("not a .lic file (bad magic bytes)")
    if len(data) < _MIN_SIZE:
        raise ChecksumError("file is truncated")
    _, major, minor = _PREAMBLE.unpack_from(data)
    if major not in MAJORS:
        hint = " (written by liccodec 0.1; decode it with that version)" if major == 1 else ""
        raise VersionError(f"unsupported .lic format version {major}.{minor} "
                           f"(this reader: {' and '.join(f'{m}.x' for m in MAJORS)}){hint}")
    if verify:
        (crc,) = struct.unpack_from("<I", data, len(data) - 4)
        if zlib.crc32(data[:-4]) != crc:
            raise ChecksumError("checksum mismatch: the file is corrupted, truncated or has trailing data")
    r = _Reader(data, _PREAMBLE.size, len(data) - 4)
    hlen = r.varint()
    end = r.pos + hlen
    if end > len(data) - 4:
        raise FormatError("declared header length exceeds the file")
    r.end = end
    model_id = r.name()
    digest = r.take(DIGEST_BYTES)
    w, h = r.varint(), r.varint()
    mode, depth = r.unpack("<BB")
    quality = r.varint()
    flags, n = r.unpack("<BB")
    if quality > 0xFFFF:
        raise FormatError(f"quality field {quality} out of range")
    try:
        mode = Mode(mode)
    except ValueError:
        raise FormatError(f"unknown colour mode {mode}") from None
    if n > MAX_STREAMS:
        raise FormatError(f"{n} streams exceed the limit of {MAX_STREAMS}")
    streams: dict[str, int] = {}
    for _ in range(n):
        name = r.name()
        length = r.varint()
        if name in streams:
            raise FormatError(f"duplicate stream {name!r}")
        streams[name] = length
    if r.pos != end:
        raise FormatError("header length does not match its fields")
    header = Header(model_id, digest, w, h, mode, depth, quality, flags, streams, major, minor)
    _check_limits(header)
    _check_streams(header)
    if verify and end + sum(streams.values()) + 4 != len(data):
        raise FormatError("declared stream lengths do not match the file size")
    return header, end


def read_header(data: bytes, verify: bool = True) -> Header:
    """Parse the header only (``lic info``). With ``verify`` the checksum is checked too."""
    return _parse(data, verify)[0]


def unpack(data: bytes) -> tuple[Header, dict[str, bytes]]:
    """Verify and split a .lic file into its header and streams."""
    header, pos = _parse(data, verify=True)
    streams = {}
    for name, length in header.streams.items():
        streams[name] = data[pos:pos + length]
        pos += length
    return header, streams
