"""Table-driven rANS: exact round trips, escapes, and a rate close to the ideal."""
import numpy as np
import pytest
from scipy.special import ndtr

from liccodec.entropy import StreamReader, StreamWriter, TableSet, gaussian_tables, scale_table
from liccodec.errors import FormatError


def encode(ts: TableSet, sym: np.ndarray, idx: np.ndarray) -> tuple[bytes, bytes]:
    w = StreamWriter()
    w.add(ts, sym, idx)
    return w.finish()


def decode(ts: TableSet, words: bytes, esc: bytes, idx: np.ndarray) -> np.ndarray:
    r = StreamReader(words, esc)
    out = r.take(ts, idx)
    r.finish()
    return out


@pytest.fixture(scope="module")
def tables():
    scales = scale_table(0.11, 64.0, 24)
    return scales, TableSet(*gaussian_tables(scales))


def test_round_trip_with_escapes(tables):
    scales, ts = tables
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(scales), 20000)
    sym = np.round(rng.standard_normal(idx.size) * scales[idx]).astype(np.int64)
    sym[[3, 70, 999]] = [5000, -70000, 123]  # far outside their tables: escaped
    words, esc = encode(ts, sym, idx)
    assert len(esc) > 0
    np.testing.assert_array_equal(decode(ts, words, esc, idx), sym)


def test_rate_is_close_to_ideal(tables):
    scales, ts = tables
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(scales), 50000)
    sym = np.round(rng.standard_normal(idx.size) * scales[idx]).astype(np.int64)
    words, esc = encode(ts, sym, idx)
    p = ndtr((sym + 0.5) / scales[idx]) - ndtr((sym - 0.5) / scales[idx])
    ideal = -np.log2(p).sum() / 8
    assert abs(len(words) + len(esc) - ideal) < 0.005 * ideal + 16


def test_deterministic_bytes(tables):
    scales, ts = tables
    idx = np.arange(1000) % len(scales)
    sym = (np.arange(1000) % 7) - 3
    assert encode(ts, sym, idx) == encode(TableSet(ts.pmf, ts.lengths, ts.offsets), sym, idx)


def test_corrupt_streams_raise_format_errors(tables):
    scales, ts = tables
    idx = np.zeros(10, dtype=np.int64)
    with pytest.raises(FormatError):
        decode(ts, b"\x00\x01\x02", b"", idx)
    with pytest.raises(FormatError):
        decode(ts, b"", b"", np.full(3, 10_000))


def test_steps_share_one_stream_and_depend_on_each_other(tables):
    """Several steps, each with its own table set and with tables chosen from the values
    decoded before it (as slices are), come back in order from one rANS and one escape stream."""
    scales, ts = tables
    other = TableSet(*gaussian_tables(scale_table(0.5, 8.0, 5)))
    rng = np.random.default_rng(2)
    first_idx = rng.integers(0, len(other), 500)
    first = np.round(rng.standard_normal(500) * 3).astype(np.int64)
    first[[7, 400]] = [90_000, -12]                      # escapes in the first step ...
    second_idx = np.abs(first) % len(scales)             # ... and tables chosen from its values
    second = np.round(rng.standard_normal(500) * scales[second_idx]).astype(np.int64)
    second[11] = -5000                                   # an escape in the second step
    w = StreamWriter()
    w.add(other, first, first_idx)
    w.add(ts, second, second_idx)
    words, esc = w.finish()
    r = StreamReader(words, esc)
    got_first = r.take(other, first_idx)
    np.testing.assert_array_equal(got_first, first)
    np.testing.assert_array_equal(r.take(ts, np.abs(got_first) % len(scales)), second)
    r.finish()


def test_unused_words_or_escapes_are_format_errors(tables):
    scales, ts = tables
    idx = np.arange(100) % len(scales)
    sym = np.zeros(100, dtype=np.int64)
    sym[5] = 10**6
    words, esc = encode(ts, sym, idx)
    with pytest.raises(FormatError, match="escape"):
        decode(ts, words, esc + b"\x00", idx)
    r = StreamReader(words, esc)
    r.take(ts, idx[:50])
    with pytest.raises(FormatError):
        r.finish()
