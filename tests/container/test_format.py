"""The .lic container rejects every kind of damage with its own error class."""
import struct
import zlib

import pytest
from lic_forge import Forged

from liccodec.container import MAJORS, MAX_SIDE, Header, Mode, format, pack, read_header, unpack
from liccodec.errors import ChecksumError, FormatError, VersionError


def sample() -> tuple[Header, dict[str, bytes]]:
    h = Header("msh.mse", bytes(range(8)), 640, 480, Mode.RGBA, 8, 4500)
    return h, {"ans": b"\x01\x02\x03\x04", "esc": bytes(range(200)), "alpha": b"abc"}


def reseal(data: bytes) -> bytes:
    """Recompute the checksum so that a test reaches the checks behind it."""
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip():
    h, s = sample()
    data = pack(h, s)
    h2, s2 = unpack(data)
    assert s2 == s
    assert (h2.model_id, h2.digest, h2.width, h2.height, h2.mode, h2.bit_depth, h2.quality) == \
        ("msh.mse", bytes(range(8)), 640, 480, Mode.RGBA, 8, 4500)
    assert h2.streams == {"ans": 4, "esc": 200, "alpha": 3}
    assert read_header(data).to_dict()["quality"] == 4.5


def test_wrong_magic():
    data = pack(*sample())
    with pytest.raises(FormatError, match="magic"):
        unpack(b"\x89PNG" + data[4:])
    with pytest.raises(FormatError):
        unpack(b"")


def test_unknown_major_version():
    data = bytearray(pack(*sample()))
    data[4] = max(MAJORS) + 1
    with pytest.raises(VersionError):
        unpack(reseal(bytes(data)))


def test_every_flipped_bit_is_detected():
    data = pack(*sample())
    for i in range(len(data)):
        for bit in (0, 5):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(FormatError):  # ChecksumError, or magic/version for those bytes
                unpack(bytes(bad))


@pytest.mark.parametrize("cut", [1, 4, 10, 100])
def test_truncation(cut):
    data = pack(*sample())
    with pytest.raises(ChecksumError):
        unpack(data[:-cut])


def test_trailing_data():
    with pytest.raises(ChecksumError):
        unpack(pack(*sample()) + b"\x00")


def test_sizes_beyond_limits_are_rejected_before_allocation(monkeypatch):
    h, s = sample()
    for width in (MAX_SIDE + 1, 0, 1 << 31):
        h.width = width
        with monkeypatch.context() as m:  # a writer that does not check, as a hostile one would not
            m.setattr(format, "_check_limits", lambda header: None)
            data = pack(h, s)
        with pytest.raises(FormatError, match="outside"):
            unpack(data)


def test_stream_lengths_must_match_file():
    data = bytearray(pack(*sample()))
    at = data.index(b"\x03ans") + 4  # the ans stream's length, one varint byte (4)
    assert data[at] == 4
    data[at] = 5
    with pytest.raises(FormatError, match="stream lengths"):
        unpack(reseal(bytes(data)))


def test_over_long_varints_are_rejected():
    data = bytearray(pack(*sample()))
    at = data.index(b"\x03ans") + 4
    bad = bytes(data[:at]) + b"\x84\x00" + bytes(data[at + 1:])  # 4 written in two bytes
    bad = bad[:6] + bytes([bad[6] + 1]) + bad[7:]              # header length one more
    with pytest.raises(FormatError, match="over-long"):
        unpack(reseal(bad))


def test_the_container_costs_few_bytes():
    """Everything but the payloads: magic, version, header and checksum of a typical file
    (format 1.0 spent 102 bytes on a charm file with its seven streams)."""
    h = Header("charm.mse", bytes(8), 768, 512, Mode.RGB, 8, 5000)
    payload = bytes(20_000)
    assert len(pack(h, {"ans": payload})) - len(payload) == 46


def test_pack_refuses_bad_headers():
    h, s = sample()
    h.width = 0
    with pytest.raises(FormatError):
        pack(h, s)


# ---- exactly as strict as docs/format.md (issue 19, item 8) ---------------------------------

def forged() -> Forged:
    return Forged.of(pack(*sample()))


def test_a_forged_copy_of_a_valid_file_is_byte_identical():
    """The forging helper writes what pack writes, so the cases below differ in one field."""
    assert forged().bytes() == pack(*sample())


@pytest.mark.parametrize("change, message", [
    (dict(flags=1), "reserved flags"),
    (dict(flags=0x80), "reserved flags"),
    (dict(model=b"m" * 65), "printable ASCII"),
    (dict(model=b"msh\x1b[2J.mse"), "printable ASCII"),
    (dict(model=b"msh mse"), "printable ASCII"),
    (dict(model=b"msh.\xe9"), "printable ASCII"),
    (dict(streams=[(b"ans", b"1234"), (b"alpha\n", b"abc")]), "printable ASCII"),
    (dict(mode=0, depth=16), "bit depth 16"),
    (dict(mode=2, depth=16), "bit depth 16"),
])
def test_header_fields_outside_the_spec_are_format_errors(change, message):
    with pytest.raises(FormatError, match=message):
        unpack(forged().but(**change).bytes())


@pytest.mark.parametrize("mode, streams, message", [
    (2, [(b"ans", b"1234")], "needs an alpha stream"),                      # RGBA without alpha
    (3, [(b"ans", b"1234"), (b"esc", b"\x02")], "needs an alpha stream"),   # LA without alpha
    (0, [(b"ans", b"1234"), (b"alpha", b"abc")], "cannot have an alpha"),   # RGB with alpha
    (1, [(b"alpha", b"abc"), (b"ans", b"1234")], "cannot have an alpha"),   # L with alpha
    (0, [(b"esc", b"\x02")], "missing stream 'ans'"),
    (0, [(b"ans", b"1234"), (b"z", b"1")], "unknown stream 'z'"),
    (0, [(b"ans", b"1234"), (b"esc", b"")], "empty"),
    (0, [(b"ans", b"")], "empty"),
])
def test_the_stream_set_must_fit_the_mode(mode, streams, message):
    with pytest.raises(FormatError, match=message):
        unpack(forged().but(mode=mode, streams=streams).bytes())


def test_a_later_minor_version_may_add_streams():
    """Minor versions add what a 2.0 reader can ignore (docs/format.md): streams, not flags."""
    f = forged().but(minor=2, streams=[*forged().streams, (b"future", b"xyz")])
    h, s = unpack(f.bytes())
    assert s["future"] == b"xyz"
    with pytest.raises(FormatError, match="reserved flags"):
        unpack(f.but(flags=2).bytes())


def test_names_are_at_most_64_bytes():
    assert unpack(forged().but(model=b"m" * 64).bytes())[0].model_id == "m" * 64


def test_pack_refuses_what_the_reader_refuses():
    h, s = sample()
    for streams in ({"esc": b"1"}, {"ans": b"1234"}, {"ans": b"1234", "alpha": b"a", "z": b"1"},
                    {"ans": b"1234", "alpha": b""}):
        with pytest.raises(ValueError):
            pack(h, streams)
    h.model_id = "bad\tname"
    with pytest.raises(ValueError):
        pack(h, s)
