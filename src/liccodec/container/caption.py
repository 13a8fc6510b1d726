"""The caption of a .lic file: a one-line description of the picture, in UTF-8.

The encoder's user writes it (``lic encode --caption``); it travels in the stream
``caption`` of a format x.1 file (docs/format.md, "Caption"). Any model's file may carry
one as a description; a ``selic`` model also conditions its synthesis on it
(``liccodec.models.fu2025``), so its decoder needs the exact text, which is why the text is
stored and not an embedding of it.

The stream is the caption's bytes and nothing else: 1..MAX_BYTES bytes of well-formed UTF-8
(no overlong forms, no surrogates), none of whose characters is a control character (U+0000
to U+001F, U+007F to U+009F), a line or paragraph separator (U+2028, U+2029) or a
bidirectional control (U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069). So a caption is
one line that a terminal can print as it is. The rules name code points, not Unicode
categories, so that every reader on every Python draws the same line.
"""
from __future__ import annotations

import re

from liccodec.errors import FormatError

CAPTION_STREAM = "caption"
MAX_BYTES = 1024
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _problem(text: str) -> str | None:
    """Why ``text`` cannot be a caption, or None."""
    n = len(text.encode("utf-8", "surrogatepass"))
    if not 1 <= n <= MAX_BYTES:
        return f"a caption takes 1..{MAX_BYTES} bytes of UTF-8, not {n}"
    bad = _FORBIDDEN.search(text)
    if bad:
        return f"a caption cannot hold the character U+{ord(bad.group()):04X} (control, separator or bidi control)"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return "a caption cannot hold a lone surrogate"
    return None


def check(text: str) -> str:
    """``text`` if it is a valid caption, else ``ValueError`` (the writer's side)."""
    why = _problem(text)
    if why:
        raise ValueError(why)
    return text


def to_bytes(text: str) -> bytes:
    """The ``caption`` stream of ``text``."""
    return check(text).encode("utf-8")


def from_bytes(data: bytes) -> str:
    """The caption of a ``caption`` stream; ``FormatError`` for anything docs/format.md does
    not allow. The length is checked before the bytes are decoded."""
    if not 1 <= len(data) <= MAX_BYTES:
        raise FormatError(f"caption stream of {len(data)} bytes (1..{MAX_BYTES} allowed)")
    try:
        text = bytes(data).decode("utf-8", "strict")
    except UnicodeDecodeError as e:
        raise FormatError(f"caption is not valid UTF-8 (byte {e.start})") from None
    why = _problem(text)
    if why:
        raise FormatError(f"bad caption: {why}")
    return text
