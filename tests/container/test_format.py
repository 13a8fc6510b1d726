"""The .lic container rejects every kind of damage with its own error class."""
import struct
import zlib

import pytest

from liccodec.container import FORMAT_MAJOR, MAX_SIDE, Header, Mode, format, pack, read_header, unpack
from liccodec.errors import ChecksumError, FormatError, VersionError


def sample() -> tuple[Header, dict[str, bytes]]:
    h = Header("msh.mse", bytes(range(8)), 640, 480, Mode.RGBA, 8, 4500)
    return h, {"z": b"\x01\x02\x03\x04", "y": bytes(range(200)), "alpha": b"abc"}


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
    assert h2.streams == {"z": 4, "y": 200, "alpha": 3}
    assert read_header(data).to_dict()["quality"] == 4.5


def test_wrong_magic():
    data = pack(*sample())
    with pytest.raises(FormatError, match="magic"):
        unpack(b"\x89PNG" + data[4:])
    with pytest.raises(FormatError):
        unpack(b"")


def test_unknown_major_version():
    data = bytearray(pack(*sample()))
    data[4] = FORMAT_MAJOR + 1
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
    at = data.index(b"\x01z") + 2  # the z stream's length, one varint byte (4)
    assert data[at] == 4
    data[at] = 5
    with pytest.raises(FormatError, match="stream lengths"):
        unpack(reseal(bytes(data)))


def test_over_long_varints_are_rejected():
    data = bytearray(pack(*sample()))
    at = data.index(b"\x01z") + 2
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
