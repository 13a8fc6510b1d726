"""Files an attacker writes: valid container, lying contents (issue 19, items 1, 4, 8).

Every file here has a correct checksum, so the container's own checks pass; what stops
them is the decoder's: the stream floor (a declared size needs a minimum of rANS data),
a stream that runs dry or is not used up, the quality field, and the reader's strictness.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner
from lic_forge import Forged, peak_growth
from PIL import Image

import liccodec
from liccodec.codec import decode_rgb
from liccodec.errors import FormatError, LicError


@pytest.fixture()
def real(tiny, photo) -> bytes:
    """A real file of the tiny model (99x70, quality 1: the smallest it writes)."""
    data = liccodec.encode(Image.fromarray(photo), model=tiny, quality=1)
    decode_rgb(data)  # and it decodes
    return data


def test_a_header_that_lies_about_the_size_is_rejected_before_anything_big(real):
    """The issue's reproduction: a real file with its size raised, checksum fixed. It used to
    decode to garbage with exit 0 (the shipped model: 4096x4096 in 195 s and 1.7 GB)."""
    f = Forged.of(real)
    for w, h in ((4096, 4096), (8192, 8192), (65535, 4096), (640, 480)):
        bad = f.but(width=w, height=h).bytes()
        out, growth = peak_growth(lambda: decode_rgb(bad))
        assert isinstance(out, FormatError) and "too short" in str(out), (w, h, out)
        assert growth < 64 << 20, (w, h, growth)
    with pytest.raises(FormatError):
        liccodec.decode(f.but(width=8192, height=8192).bytes())


def test_a_smaller_size_leaves_data_unused(real):
    f = Forged.of(real)
    with pytest.raises(FormatError, match="unused|ran out|range"):
        decode_rgb(f.but(width=30, height=20).bytes())


@pytest.mark.parametrize("ans", [b"", b"\x01\x00\x00\x00", bytes(4), b"\x00\x00\x00\x01" * 2])
def test_empty_or_tiny_streams_are_rejected(real, ans):
    """An empty `ans` stream used to decode with exit 0 (constriction decodes the lowest
    value of every table from an empty coder)."""
    f = Forged.of(real)
    with pytest.raises(FormatError):
        decode_rgb(f.but(streams=[(b"ans", ans)]).bytes())


def test_a_stream_ending_in_a_zero_word_is_a_format_error(real):
    """Used to be a ValueError from constriction (exit 1, "internal error")."""
    f = Forged.of(real)
    (name, ans), *rest = f.streams
    with pytest.raises(FormatError, match="zero word"):
        decode_rgb(f.but(streams=[(name, ans + bytes(4)), *rest]).bytes())


@pytest.mark.parametrize("quality", [3001, 3500, 65535])
def test_a_quality_field_outside_the_model_range_is_a_format_error(real, quality):
    """Used to be a ValueError (exit 1, "internal error"). The tiny model's levels are 1-3, which
    a 2.x file extends down to 0 (extrapolated gains); above 3 needs a residual layer (4.x)."""
    with pytest.raises(FormatError, match="quality"):
        decode_rgb(Forged.of(real).but(quality=quality).bytes())


def test_the_cli_exits_4_on_each_of_them(real, tmp_path):
    from liccodec.cli.main import main

    f = Forged.of(real)
    cases = {"size": f.but(width=4096, height=4096), "empty": f.but(streams=[(b"ans", b"")]),
             "quality": f.but(quality=65535), "flags": f.but(flags=4),
             "zero": f.but(streams=[(b"ans", f.streams[0][1] + bytes(4)), *f.streams[1:]])}
    for name, forged in cases.items():
        src = tmp_path / f"{name}.lic"
        src.write_bytes(forged.bytes())
        r = CliRunner().invoke(main, ["decode", str(src), str(tmp_path / f"{name}.png")])
        assert r.exit_code == 4, (name, r.output)
        assert not (tmp_path / f"{name}.png").exists()


def test_lic_info_never_prints_control_characters(real, tmp_path):
    """A model id with an escape sequence used to reach the terminal raw; the reader now
    refuses names that are not printable ASCII, and says so without echoing the bytes raw."""
    from liccodec.cli.main import main

    src = tmp_path / "evil.lic"
    src.write_bytes(Forged.of(real).but(model=b"msh.tiny\x1b]0;pwned\x07\x1b[2J").bytes())
    r = CliRunner().invoke(main, ["info", str(src)])
    assert r.exit_code == 4
    assert "\x1b" not in r.output and "\x07" not in r.output
    ok = tmp_path / "ok.lic"
    ok.write_bytes(real)
    r = CliRunner().invoke(main, ["info", str(ok)])
    assert r.exit_code == 0 and "msh.tiny" in r.output


def test_real_files_of_flat_images_clear_the_floor(tiny):
    """The cheapest real files (flat images, lowest quality) still decode: the floor is
    below anything the encoder writes."""
    for value in (0, 128, 255):
        for side in (64, 300, 1000):
            data = liccodec.encode(Image.fromarray(np.full((side, side, 3), value, np.uint8)), model=tiny,
                                   quality=1)
            assert decode_rgb(data)[1].shape == (side, side, 3)


def test_a_kilobyte_cannot_ask_for_much(real):
    """Whatever a file under 1 KB declares, its decoding stays small and quick: the biggest
    size the floor lets through for this stream is decoded or rejected in bounded memory."""
    f = Forged.of(real)
    start = time.perf_counter()
    worst = 0
    for side in (128, 256, 512, 1024, 2048):
        out, growth = peak_growth(lambda: decode_rgb(f.but(width=side, height=side).bytes()))
        assert isinstance(out, (LicError, tuple)), out
        worst = max(worst, growth)
    assert worst < 128 << 20
    assert time.perf_counter() - start < 20
