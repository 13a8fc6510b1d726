"""The quality-map stream of format 3.0 (docs/format.md, "Quality map"): its layout, and files
that lie about it. Every malformed map is a ``FormatError`` before the latents are decoded,
and nothing is allocated beyond what the declared (checked) image size allows."""
from __future__ import annotations

import random
import re
import time
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from lic_forge import Forged, peak_growth
from PIL import Image

import liccodec
from liccodec.codec import decode_rgb
from liccodec.container import MAJORS, QMAP_STREAM, Header, Mode, QualityMap, pack, read_header, unpack
from liccodec.errors import FormatError, LicError, VersionError


def _map(shape, count, seed=0) -> QualityMap:
    rng = np.random.default_rng(seed)
    index = rng.integers(0, count, shape).astype(np.uint8)
    index.flat[:count] = np.arange(count)  # every quality used
    return QualityMap(tuple(1000 + 7 * i for i in range(count)), index)


@pytest.mark.parametrize("count", [2, 3, 4, 5, 16, 17, 256])
@pytest.mark.parametrize("shape", [(1, 1 + 255), (4, 4), (3, 7), (32, 48)])
def test_round_trip(count, shape):
    if shape[0] * shape[1] < count:
        shape = (count, 1)
    m = _map(shape, count)
    back = QualityMap.from_bytes(m.to_bytes(), shape)
    assert back.qualities == m.qualities and np.array_equal(back.index, m.index)
    assert QualityMap.qualities_of(m.to_bytes()) == m.qualities


def test_a_region_costs_few_bytes():
    yy, xx = np.mgrid[0:32, 0:48]
    ellipse = ((yy - 15.5) / 8) ** 2 + ((xx - 23.5) / 12) ** 2 <= 1
    m = QualityMap.of(np.where(ellipse, 6000, 2000))
    assert m.qualities == (2000, 6000) and len(m.to_bytes()) < 64   # 192 bytes of bits before deflate
    assert QualityMap.of(np.full((4, 4), 3000)) is None


def _stream(head: bytes, raw: bytes) -> bytes:
    return head + zlib.compress(raw)


@pytest.mark.parametrize("data,message", [
    (b"", "layout"),
    (b"\x02\x02\x01\x02", "layout"),
    (b"\x01", "shorter"),
    (b"\x01\x01\xe8\x07", "1 qualities"),
    (b"\x01\x81\x02", "257 qualities"),
    (b"\x01\x80\x00", "over-long"),
    (b"\x01\x02\xff\xff\xff\x01", "too long"),
    (_stream(b"\x01\x02\xd0\x0f\xe8\x07", bytes(2)), "strictly increasing"),
    (_stream(b"\x01\x02\xe8\x07\xe8\x07", bytes(2)), "strictly increasing"),
    (_stream(b"\x01\x02\xe8\x07\x80\x80\x04", bytes(2)), "out of range"),
    (b"\x01\x02\xe8\x07\xd0\x0f", "wrong size"),
    (b"\x01\x02\xe8\x07\xd0\x0f" + zlib.compress(bytes(2))[:-3], "wrong size|corrupt"),
    (b"\x01\x02\xe8\x07\xd0\x0f" + b"garbage!", "corrupt"),
    (_stream(b"\x01\x02\xe8\x07\xd0\x0f", bytes(1)), "wrong size"),
    (_stream(b"\x01\x02\xe8\x07\xd0\x0f", bytes(3)), "wrong size"),
    (_stream(b"\x01\x02\xe8\x07\xd0\x0f", bytes(2)) + b"\x00", "wrong size"),
    (_stream(b"\x01\x02\xe8\x07\xd0\x0f", b"\x00\x01"), "padding"),
    (_stream(b"\x01\x03\xe8\x07\xd0\x0f\xb8\x17", b"\xc0\x00\x00"), "index out of range"),
    (_stream(b"\x01\x02\xe8\x07\xd0\x0f", bytes(50_000_000)), "wrong size"),   # a zlib bomb
])
def test_malformed_maps_are_format_errors(data, message):
    """For y of 3x3 positions: 9 one-bit indexes (2 bytes), or 9 two-bit ones (3 bytes)."""
    out, growth = peak_growth(lambda: QualityMap.from_bytes(data, (3, 3)))
    assert isinstance(out, FormatError) and re.search(message, str(out)), out
    assert growth < 16 << 20


def test_the_writer_picks_the_version_and_the_reader_knows_both():
    h = Header("msh.mse", bytes(8), 64, 64, Mode.RGB, 8, 4000)
    plain = pack(h, {"ans": b"\x01\x02\x03\x04"})
    assert (plain[4], plain[5]) == (2, 0) and read_header(plain).major == 2
    roi = pack(h, {"ans": b"\x01\x02\x03\x04", QMAP_STREAM: _map((4, 4), 2).to_bytes()})
    assert (roi[4], roi[5]) == (3, 0) and unpack(roi)[1][QMAP_STREAM] == _map((4, 4), 2).to_bytes()
    bad = Forged.of(roi).but(major=max(MAJORS) + 1).bytes()
    with pytest.raises(VersionError, match="2.x and 3.x"):
        unpack(bad)


# ---- forged files of the tiny model ---------------------------------------------------------
@pytest.fixture()
def roi_file(tiny, photo) -> bytes:
    mask = np.zeros(photo.shape[:2], bool)
    mask[20:50, 30:70] = True
    data = liccodec.encode(Image.fromarray(photo), model=tiny, quality=3, roi=mask, roi_background=1.4)
    decode_rgb(data)
    return data


def _with_qmap(f: Forged, qmap: bytes) -> Forged:
    return f.but(streams=[(k, qmap if k == b"qmap" else v) for k, v in f.streams])


def test_forged_files_are_rejected(roi_file):
    f = Forged.of(roi_file)
    qmap = dict(f.streams)[b"qmap"]
    plain = [(k, v) for k, v in f.streams if k != b"qmap"]
    cases = {
        "3.0 without a map": (f.but(streams=plain), "needs a 'qmap' stream"),
        "2.0 with a map": (f.but(major=2), "unknown stream 'qmap'"),
        "quality over the range": (_with_qmap(f, _stream(b"\x01\x02\xe8\x07\xb9\x17", bytes(8))), "outside msh.tiny"),
        "quality under the range": (_with_qmap(f, _stream(b"\x01\x02\xe7\x07\xb8\x0b", bytes(8))), "outside msh.tiny"),
        "map of another size": (_with_qmap(f, _stream(b"\x01\x02\xe8\x07\xb8\x0b", bytes(9))), "wrong size"),
        "cut map": (_with_qmap(f, qmap[:-2]), "wrong size|corrupt"),
        "layout 2": (_with_qmap(f, b"\x02" + qmap[1:]), "layout"),
        "huge image": (f.but(width=16384, height=16384), "wrong size|too short"),
    }
    for name, (forged, message) in cases.items():
        out, growth = peak_growth(lambda: decode_rgb(forged.bytes()))
        assert isinstance(out, FormatError) and re.search(message, str(out)), (name, out)
        assert growth < 64 << 20, (name, growth)


def test_a_huge_declared_image_with_a_matching_map_still_meets_the_floor(roi_file):
    """A map that does fit a forged 16384x16384 (1M positions of y, 128 KiB of one-bit
    indexes) gets parsed, in bounded memory, and the stream floor rejects the file."""
    f = Forged.of(roi_file)
    n = (16384 // 16) ** 2
    forged = _with_qmap(f.but(width=16384, height=16384), _stream(b"\x01\x02\xe8\x07\xb8\x0b", bytes(n // 8)))
    out, growth = peak_growth(lambda: decode_rgb(forged.bytes()))
    assert isinstance(out, FormatError) and "too short" in str(out), out
    assert growth < 64 << 20


def test_the_cli_exits_4(roi_file, tmp_path):
    from liccodec.cli.main import main

    src = tmp_path / "bad.lic"
    src.write_bytes(_with_qmap(Forged.of(roi_file), b"\x01\x02").bytes())
    r = CliRunner().invoke(main, ["decode", str(src), str(tmp_path / "bad.png")])
    assert r.exit_code == 4 and "quality-map" in r.output, r.output
    assert not (tmp_path / "bad.png").exists()


def test_mutants_of_the_map_decode_or_are_lic_errors(roi_file):
    """Seeded mutants of the qmap stream (flips, cuts, random bytes, checksum fixed): each
    decodes (a valid map, e.g. another index) or is rejected with a LicError."""
    rng = random.Random("issue24-qmap")
    f = Forged.of(roi_file)
    qmap = dict(f.streams)[b"qmap"]
    cpu, counts, failures = time.process_time(), {"decoded": 0, "rejected": 0}, []
    for i in range(60):
        b = bytearray(qmap)
        kind = i % 4
        if kind == 0:
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b = b[:rng.randrange(1, len(b))]
        elif kind == 2:
            b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            b = bytearray(b[:rng.randrange(1, 8)] + rng.randbytes(rng.randint(1, 40)))
        out, _ = peak_growth(lambda: decode_rgb(_with_qmap(f, bytes(b)).bytes()))
        if isinstance(out, LicError):
            counts["rejected"] += 1
        elif isinstance(out, Exception):
            failures.append(f"#{i}: {type(out).__name__}: {out}")
        else:
            counts["decoded"] += 1
    assert not failures, "\n".join(failures)
    assert counts["rejected"] > 30, counts
    assert time.process_time() - cpu < 30
