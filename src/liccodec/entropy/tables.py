"""Probability tables and the table-driven rANS coder.

Every symbol is coded with one of a fixed set of discrete distributions ("tables"). A
table covers the integer values ``offset .. offset+length-1`` plus one *escape* category
for anything outside; escaped values go to a separate byte stream as zigzag varints.
Tables are computed once, at export, and stored in the weights file as float32, so the
decoder never evaluates erf/exp at run time (libm results differ between machines; the
stored numbers do not). constriction quantizes them to its fixed-point CDFs with
``perfect=False``, which is pure integer/IEEE arithmetic in Rust, so the coder's models
are bit-identical everywhere.

A file's latents go into one rANS stream and one escape stream, however many coding steps
they take (z, then y or its slices): :class:`StreamWriter` collects the steps in the order
the decoder takes them and :class:`StreamReader` takes them back one at a time, so a step
can depend on the values decoded before it. Within a step, symbols are grouped by table and
each group is coded in one constriction call; the decoder knows every symbol's table (from
the integer hyper-synthesis), so it can regroup.

Hostile input. A reader decodes as many symbols as the header's size implies, so a file
that lies about its size must be caught before that much is decoded: :func:`min_stream_bits`
is a floor on the rANS bits a real encoder writes for a given number of symbols per table
(:meth:`StreamReader.check_room`, called before decoding and before any allocation that
grows with the size). :class:`StreamReader` refuses to go on once its stream has run dry
(constriction would keep decoding the lowest value of every table for free) and checks
that every escape is in range, outside its table and in its shortest form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np

from liccodec.errors import FormatError
from liccodec.fixedpoint import ESCAPE_STREAM, LATENT_STREAM

ESCAPE_LIMIT = 1 << 24  # |symbol| beyond this is a format error (bounds varint decoding)
PRECISION = 24          # constriction's fixed-point probabilities: 2^-24 units
# Bits of a stream that can hold symbols below their floor (TableSet.min_bits): the final
# state the decoder starts from (64 bits) and the tail decoded after the last word, when the
# state is under 2^32 and a step can shrink it by less (see min_stream_bits).
STATE_SLACK_BITS = 256


def scale_table(lo: float = 0.11, hi: float = 256.0, levels: int = 128) -> np.ndarray:
    """Scales of the Gaussian tables, evenly spaced in log scale (128 levels: 6.3% apart).

    A scale is coded with the nearest table in log scale. 128 levels instead of 64 saved
    0.05-0.14% of the bytes on 6 Kodak images for 0.8 MB more weights (docs/training-history.md,
    "The coding overhead, and format 2.0").
    """
    return np.exp(np.linspace(math.log(lo), math.log(hi), levels))


def gaussian_tables(scales: np.ndarray, tail: float = 1e-9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discretized zero-mean Gaussians, one per scale: (pmf padded, lengths, offsets).

    The last used column of each row is the escape probability (mass outside the range).
    Only called at export time.
    """
    from scipy.special import ndtr, ndtri

    half = [int(math.ceil(-ndtri(tail / 2) * s)) for s in scales]
    width = 2 * max(half) + 2
    pmf = np.zeros((len(scales), width), dtype=np.float64)
    lengths = np.zeros(len(scales), dtype=np.int32)
    offsets = np.zeros(len(scales), dtype=np.int32)
    for k, (s, r) in enumerate(zip(scales, half)):
        v = np.arange(-r, r + 1, dtype=np.float64)
        p = ndtr((v + 0.5) / s) - ndtr((v - 0.5) / s)
        esc = max(1.0 - p.sum(), 0.0)
        pmf[k, : 2 * r + 1] = p
        pmf[k, 2 * r + 1] = esc
        lengths[k] = 2 * r + 1
        offsets[k] = -r
    return pmf.astype(np.float32), lengths, offsets


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def _write_varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for u in _zigzag(values).tolist():
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
    return bytes(out)


def _read_varints(data: bytes, pos: int, count: int) -> tuple[np.ndarray, int]:
    """``count`` zigzag varints from ``data[pos:]``; returns them and the position after.

    Only what :func:`_write_varints` writes is accepted: the shortest form, and values
    below ``ESCAPE_LIMIT`` in magnitude (as the writer enforces; at most 4 bytes)."""
    if count > len(data) - pos:  # every varint takes a byte: no allocation beyond the stream
        raise FormatError("escape stream is truncated")
    vals = np.empty(count, dtype=np.int64)
    for i in range(count):
        u, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 21:  # a fifth byte would exceed the limit
                raise FormatError("escape stream is truncated or malformed")
            b = data[pos]
            pos += 1
            u |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if (b == 0 and shift > 7) or u > 2 * (ESCAPE_LIMIT - 1):
            raise FormatError("escape value is out of range or not in its shortest form")
        vals[i] = (u >> 1) if u % 2 == 0 else -((u + 1) >> 1)
    return vals, pos


@dataclass
class TableSet:
    """A set of coding tables (rows of ``pmf``), built into constriction models lazily."""

    pmf: np.ndarray      # (T, width) float32; row k uses columns 0..lengths[k] (last = escape)
    lengths: np.ndarray  # (T,) int: number of in-range values of each table
    offsets: np.ndarray  # (T,) int: the value coded by category 0

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self._models: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def min_bits(self) -> np.ndarray:
        """(T,) for each table, a lower bound on the bits rANS spends on one of its symbols.

        With ``p`` the table's largest probability after constriction's quantization, a
        decode step shrinks a state of at least 32 bits by at least the factor
        ``1 - (1 - p)(1 - 2^-8)`` whatever symbol it yields (``x' = f (x >> 24) + r`` with
        ``f <= p 2^24`` and ``r < f``), so every such symbol uses at least
        ``-log2(1 - (1 - p)(1 - 2^-8))`` bits of the stream. ``p`` is taken from the stored
        float table plus ``n 2^-24`` (``n`` categories) as an upper bound on its quantized value.
        """
        mb = getattr(self, "_min_bits", None)
        if mb is None:
            mb = np.empty(len(self), dtype=np.float64)
            for k in range(len(self)):
                n = int(self.lengths[k]) + 1
                p = self.pmf[k, :n].astype(np.float64)
                p_hi = min(1.0, p.max() / p.sum() + n * 2.0**-PRECISION)
                mb[k] = -math.log2(1.0 - (1.0 - p_hi) * (1.0 - 2.0**-8))
            self._min_bits = mb
        return mb

    def model(self, k: int):
        m = self._models.get(k)
        if m is None:
            p = self.pmf[k, : self.lengths[k] + 1].astype(np.float64)
            m = constriction.stream.model.Categorical(p, perfect=False)
            self._models[k] = m
        return m


def min_stream_bits(tables: TableSet, counts: np.ndarray) -> float:
    """A floor on the bits of rANS words that hold ``counts[k]`` symbols of table k.

    While the decoder's state holds 32 bits or more (always, while words remain), each
    symbol uses at least :meth:`TableSet.min_bits`, whatever its value. Below that, in the
    tail after the last word, a step can use less: an encoder starts from an empty state,
    in which the lowest value of a table costs nothing and the others cost their cumulative
    frequency additively. A real latent's first coded symbols are never a long run of lowest
    values, so the tail holds few of them; ``STATE_SLACK_BITS`` allows for it and for the
    final state. The floor assumes every symbol is its table's most probable value, so no
    real image is coded below it (docs/format.md, "Security", gives the measured margins);
    a header that declares more symbols than its stream can hold is a lie, caught before
    anything is decoded or allocated for them.
    """
    return float(np.dot(np.asarray(counts, dtype=np.float64), tables.min_bits())) - STATE_SLACK_BITS


def _groups(index: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(table, positions) for each table used, ascending; positions in raster order."""
    order = np.argsort(index, kind="stable")
    ks, starts = np.unique(index[order], return_index=True)
    bounds = list(starts) + [len(order)]
    return [(k, order[bounds[j]:bounds[j + 1]]) for j, k in enumerate(ks.tolist())]


class StreamWriter:
    """Codes several steps (``add``) into one rANS stream and one escape stream.

    Steps are added in the order the decoder will take them. rANS is a stack, so
    :meth:`finish` pushes them last first; the escapes are written first first.
    """

    def __init__(self) -> None:
        self._groups: list[tuple[TableSet, int, np.ndarray]] = []
        self._escapes: list[np.ndarray] = []

    def add(self, tables: TableSet, symbols: np.ndarray, index: np.ndarray) -> None:
        """Code ``symbols[i]`` with table ``index[i]`` of ``tables``."""
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        index = np.asarray(index, dtype=np.int64).ravel()
        if np.abs(symbols).max(initial=0) >= ESCAPE_LIMIT:
            raise ValueError("latent value out of the coder's range")
        for k, pos in _groups(index):
            cat = symbols[pos] - tables.offsets[k]
            esc = (cat < 0) | (cat >= tables.lengths[k])
            self._groups.append((tables, k, np.where(esc, tables.lengths[k], cat).astype(np.int32)))
            self._escapes.append(symbols[pos][esc])

    def finish(self) -> tuple[bytes, bytes]:
        """(rANS words as little-endian u32, escapes as zigzag varints in decoding order)."""
        coder = constriction.stream.stack.AnsCoder()
        for tables, k, cat in reversed(self._groups):  # a stack: the first group decodes first
            coder.encode_reverse(cat, tables.model(k))
        words = coder.get_compressed().astype("<u4").tobytes()
        escapes = np.concatenate(self._escapes) if self._escapes else np.zeros(0, np.int64)
        return words, _write_varints(escapes)


class StreamReader:
    """Takes back, step by step, what a :class:`StreamWriter` wrote."""

    def __init__(self, words: bytes, escapes: bytes) -> None:
        if len(words) % 4:
            raise FormatError("entropy-coded stream length is not a multiple of 4")
        if words[-4:] == bytes(4):  # constriction never ends a stream in a zero word
            raise FormatError("entropy-coded stream ends in a zero word")
        self._coder = constriction.stream.stack.AnsCoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
        self._escapes, self._pos = escapes, 0

    def check_room(self, tables: TableSet, counts: np.ndarray) -> None:
        """Raise :class:`FormatError` unless what is left of the stream can hold ``counts[k]``
        symbols of table k (:func:`min_stream_bits`). Cheap: call it before allocating
        anything that grows with the counts."""
        need, have = min_stream_bits(tables, counts), self._coder.num_valid_bits()
        if need > have:
            raise FormatError(f"the entropy-coded stream is too short for the declared image size "
                              f"({have} bits left, at least {max(0, math.ceil(need))} needed)")

    def take(self, tables: TableSet, index: np.ndarray) -> np.ndarray:
        """The next step's values, ``index[i]`` being value i's table (int64, flat).

        A stream that runs dry before a group is a :class:`FormatError`: from an empty coder
        constriction decodes the lowest value of every table without reading anything, which
        an encoder writes only when every remaining symbol is that value (probability
        about 1e-9 a symbol for the shipped tables, 3e-6 for the narrowest)."""
        index = np.asarray(index, dtype=np.int64).ravel()
        if index.size and (index.min() < 0 or index.max() >= len(tables)):
            raise FormatError("table index out of range")
        out = np.empty(index.size, dtype=np.int64)
        esc_pos, esc_tab = [], []
        for k, pos in _groups(index):
            if self._coder.num_valid_bits() == 0:
                raise FormatError("entropy-coded stream ran out before every latent was decoded")
            cat = self._coder.decode(tables.model(k), len(pos)).astype(np.int64)
            out[pos] = cat + tables.offsets[k]
            esc_pos.append(pos[cat == tables.lengths[k]])
            esc_tab.append(np.full(len(esc_pos[-1]), k, dtype=np.int64))
        esc_all = np.concatenate(esc_pos) if esc_pos else np.zeros(0, np.int64)
        values, self._pos = _read_varints(self._escapes, self._pos, len(esc_all))
        if esc_all.size:
            k = np.concatenate(esc_tab)
            inside = (values >= tables.offsets[k]) & (values < tables.offsets[k] + tables.lengths[k])
            if inside.any():
                raise FormatError("escaped value lies inside its table's range")
        out[esc_all] = values
        return out

    def finish(self) -> None:
        """Check that every word and every escape was used."""
        if not self._coder.is_empty():
            raise FormatError("entropy-coded stream has unused data")
        if self._pos != len(self._escapes):
            raise FormatError("escape stream has trailing bytes")


def streams_of(writer: StreamWriter) -> dict[str, bytes]:
    """The container streams of a finished writer (the escape stream only when not empty)."""
    words, escapes = writer.finish()
    return {LATENT_STREAM: words, **({ESCAPE_STREAM: escapes} if escapes else {})}


def reader_of(streams: dict[str, bytes]) -> StreamReader:
    if LATENT_STREAM not in streams:
        raise FormatError(f"missing stream {LATENT_STREAM!r}")
    return StreamReader(streams[LATENT_STREAM], streams.get(ESCAPE_STREAM, b""))
