"""Table-driven rANS: exact round trips, escapes, and a rate close to the ideal."""
import numpy as np
import pytest
from scipy.special import ndtr

from liccodec.entropy import StreamReader, StreamWriter, TableSet, gaussian_tables, min_stream_bits, scale_table
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


# ---- hostile streams (issue 19, items 1, 4, 8) ----------------------------------------------

def test_a_stream_that_runs_dry_is_a_format_error(tables):
    """constriction decodes the lowest value of every table from an empty coder, for free:
    a reader asked for more symbols than were written must notice instead of making them up."""
    scales, ts = tables
    idx = np.arange(300) % len(scales)
    sym = np.zeros(300, dtype=np.int64)
    words, esc = encode(ts, sym[:100], idx[:100])
    r = StreamReader(words, esc)
    np.testing.assert_array_equal(r.take(ts, idx[:100]), sym[:100])
    with pytest.raises(FormatError, match="ran out"):
        r.take(ts, idx[100:])
    with pytest.raises(FormatError, match="ran out"):
        StreamReader(b"", b"").take(ts, idx)


def test_a_stream_ending_in_a_zero_word_is_a_format_error(tables):
    scales, ts = tables
    words, esc = encode(ts, np.zeros(10, np.int64), np.arange(10))
    with pytest.raises(FormatError, match="zero word"):
        StreamReader(words + bytes(4), esc)
    with pytest.raises(FormatError, match="zero word"):
        StreamReader(bytes(4), b"")


@pytest.mark.parametrize("esc, message", [
    (b"\x80\x00", "shortest form"),                    # 0 in two bytes
    (b"\xa0\x80\x80\x80\x01", "malformed"),            # five bytes: beyond the limit
    (bytes([0x80, 0x80, 0x80, 0x10]), "out of range"),  # zigzag 2^25: value 2^24
    (b"\x00", "inside its table"),                     # value 0 is inside every table
    (b"", "truncated"),
])
def test_escapes_are_only_what_a_writer_writes(tables, esc, message):
    scales, ts = tables
    idx = np.zeros(5, dtype=np.int64)
    sym = np.zeros(5, dtype=np.int64)
    sym[2] = 1000                                       # one escape, outside table 0
    words, good = encode(ts, sym, idx)
    assert good == b"\xd0\x0f"                          # zigzag(1000) = 2000
    np.testing.assert_array_equal(decode(ts, words, good, idx), sym)
    with pytest.raises(FormatError, match=message):
        decode(ts, words, esc, idx)


def test_escapes_at_the_limit_round_trip(tables):
    scales, ts = tables
    idx = np.zeros(3, dtype=np.int64)
    sym = np.array([(1 << 24) - 1, 0, -(1 << 24) + 1])
    words, esc = encode(ts, sym, idx)
    np.testing.assert_array_equal(decode(ts, words, esc, idx), sym)


def test_check_room_is_a_floor_that_real_streams_clear(tables):
    """A stream of symbols all at their table's most probable value (the cheapest a real
    latent can be) holds more than the floor; the same stream cannot pass for many more."""
    scales, ts = tables
    rng = np.random.default_rng(3)
    for n in (10, 1000, 100_000):
        idx = rng.integers(0, len(scales), n)
        words, esc = encode(ts, np.zeros(n, np.int64), idx)   # 0: every table's mode
        counts = np.bincount(idx, minlength=len(scales))
        assert 8 * len(words) >= min_stream_bits(ts, counts)
        StreamReader(words, esc).check_room(ts, counts)
        if 8 * len(words) > 256:                              # beyond the state's slack
            with pytest.raises(FormatError, match="too short"):
                StreamReader(words, esc).check_room(ts, 3 * counts)


def test_min_bits_bounds_the_cost_of_the_likeliest_value(tables):
    scales, ts = tables
    mb = ts.min_bits()
    p = ts.pmf.max(axis=1).astype(np.float64) / ts.pmf.sum(axis=1)
    assert (mb > 0).all() and (mb <= -np.log2(p) + 1e-6).all()
    assert mb[-1] > 4 and mb[0] < 1e-4                      # wide tables cost bits, the narrowest almost none
