"""Table-driven rANS: exact round trips, escapes, and a rate close to the ideal."""
import numpy as np
import pytest
from scipy.special import ndtr

from liccodec.entropy import TableSet, gaussian_tables, scale_table
from liccodec.errors import FormatError


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
    words, esc = ts.encode(sym, idx)
    assert len(esc) > 0
    np.testing.assert_array_equal(ts.decode(words, esc, idx), sym)


def test_rate_is_close_to_ideal(tables):
    scales, ts = tables
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(scales), 50000)
    sym = np.round(rng.standard_normal(idx.size) * scales[idx]).astype(np.int64)
    words, esc = ts.encode(sym, idx)
    p = ndtr((sym + 0.5) / scales[idx]) - ndtr((sym - 0.5) / scales[idx])
    ideal = -np.log2(p).sum() / 8
    assert abs(len(words) + len(esc) - ideal) < 0.005 * ideal + 16


def test_deterministic_bytes(tables):
    scales, ts = tables
    idx = np.arange(1000) % len(scales)
    sym = (np.arange(1000) % 7) - 3
    assert ts.encode(sym, idx) == TableSet(ts.pmf, ts.lengths, ts.offsets).encode(sym, idx)


def test_corrupt_streams_raise_format_errors(tables):
    scales, ts = tables
    idx = np.zeros(10, dtype=np.int64)
    with pytest.raises(FormatError):
        ts.decode(b"\x00\x01\x02", b"", idx)
    with pytest.raises(FormatError):
        ts.decode(b"", b"", np.full(3, 10_000))
