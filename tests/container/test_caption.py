"""The caption stream of format x.1 (docs/format.md, "Caption"): its rules, the version it
makes, files that lie about it, and the CLI. A bad caption is a ``FormatError`` (exit 4)
before the latents are decoded; a file without one is byte for byte what it was."""
from __future__ import annotations

import random
import re

import numpy as np
import pytest
from click.testing import CliRunner
from lic_forge import Forged, peak_growth
from PIL import Image

import liccodec
from liccodec.codec import decode_rgb, encode_planes, read_caption, with_caption
from liccodec.container import CAPTION_STREAM, Header, Mode, pack, read_header, unpack
from liccodec.container import caption as cap
from liccodec.errors import FormatError, LicError, UsageError
from liccodec.imageio import split


@pytest.mark.parametrize("text", ["a red barn", "x", "Zwei Papageien auf einem Ast, grün und rot",
                                  "海辺の灯台 🏝", "tabs\u00a0and spaces  ok", "é" * 512])
def test_round_trip(text):
    assert cap.from_bytes(cap.to_bytes(text)) == text


@pytest.mark.parametrize("data,message", [
    (b"", "0 bytes"),
    (b"a" * 1025, "1025 bytes"),
    (b"\xff\xfe", "not valid UTF-8"),
    (b"caf\xc3", "not valid UTF-8"),               # a character cut at the end
    (b"\xc0\xaf", "not valid UTF-8"),              # an overlong '/'
    (b"\xed\xa0\x80", "not valid UTF-8"),          # a surrogate
    (b"\xf4\x90\x80\x80", "not valid UTF-8"),      # beyond U+10FFFF
    (b"two\nlines", "U\\+000A"),
    (b"\x1b[31mred", "U\\+001B"),
    (b"nul\x00", "U\\+0000"),
    (b"del\x7f", "U\\+007F"),
    ("c1 \u0085".encode(), "U\\+0085"),
    ("evil \u202egpj.exe".encode(), "U\\+202E"),
    ("iso \u2066x\u2069".encode(), "U\\+2066"),
    ("para \u2029".encode(), "U\\+2029"),
])
def test_bad_captions_are_format_errors(data, message):
    with pytest.raises(FormatError, match=message):
        cap.from_bytes(data)


def test_the_writer_refuses_what_the_reader_refuses():
    for text in ("", "a" * 1025, "é" * 513, "line\nbreak", "\u202e", "\ud800"):
        with pytest.raises(ValueError):
            cap.to_bytes(text)
    assert len(cap.to_bytes("é" * 512)) == 1024


def test_the_writer_picks_the_minor_version():
    h = Header("msh.mse", bytes(8), 64, 64, Mode.RGB, 8, 4000)
    plain = pack(h, {"ans": b"\x01\x02\x03\x04"})
    assert (plain[4], plain[5]) == (2, 0)
    described = pack(h, {"ans": b"\x01\x02\x03\x04", CAPTION_STREAM: cap.to_bytes("a cat")})
    assert (described[4], described[5]) == (2, 1) and unpack(described)[1][CAPTION_STREAM] == b"a cat"
    h.mode = Mode.RGB
    assert read_header(described).to_dict()["format_version"] == "2.1"


def test_the_version_and_the_stream_go_together():
    base = Forged()
    described = base.but(minor=1, streams=[*base.streams, (b"caption", b"a cat")])
    assert unpack(described.bytes())[1]["caption"] == b"a cat"
    with pytest.raises(FormatError, match="unknown stream 'caption'"):
        unpack(described.but(minor=0).bytes())
    with pytest.raises(FormatError, match="needs a 'caption' stream"):
        unpack(base.but(minor=1).bytes())
    with pytest.raises(FormatError, match="unknown stream 'future'"):
        unpack(described.but(streams=[*described.streams, (b"future", b"x")]).bytes())
    # a later minor: its other streams are ignored, the caption is optional
    assert unpack(base.but(minor=2, streams=[*base.streams, (b"future", b"x")]).bytes())


# ---- real files of the tiny models ----------------------------------------------------------
@pytest.fixture()
def described(tiny, photo) -> bytes:
    return liccodec.encode(Image.fromarray(photo), model=tiny, quality=2, caption="a smooth gradient, noisy")


def test_a_caption_changes_nothing_but_its_stream(tiny, photo, described):
    plain = liccodec.encode(Image.fromarray(photo), model=tiny, quality=2)
    assert with_caption(described, None) == plain and with_caption(plain, "a smooth gradient, noisy") == described
    assert (plain[4], plain[5]) == (2, 0) and (described[4], described[5]) == (2, 1)
    assert len(described) - len(plain) == len("a smooth gradient, noisy") + len(b"\x07caption") + 1
    h, streams = unpack(described)
    assert read_caption(h, streams) == "a smooth gradient, noisy"
    assert np.array_equal(decode_rgb(plain)[1], decode_rgb(described)[1])  # msh ignores it


def test_a_caption_goes_with_a_quality_map(tiny, photo):
    mask = np.zeros(photo.shape[:2], bool)
    mask[20:50, 30:70] = True
    data = liccodec.encode(Image.fromarray(photo), model=tiny, quality=3, roi=mask, roi_background=1.4,
                           caption="a box")
    assert (data[4], data[5]) == (3, 1)
    decode_rgb(data)


def test_the_api_refuses_bad_captions(tiny, photo):
    with pytest.raises(UsageError, match="caption"):
        encode_planes(split(Image.fromarray(photo)), tiny, 2, caption="a\nb")


def test_forged_captions_are_rejected_before_the_latents(described):
    f = Forged.of(described)

    def with_stream(data: bytes) -> Forged:
        return f.but(streams=[(k, data if k == b"caption" else v) for k, v in f.streams])

    cases = {
        "too long": (with_stream(b"a" * 5000), "5000 bytes"),
        "bad utf-8": (with_stream(b"\xc3\x28"), "UTF-8"),
        "escape": (with_stream(b"\x1b]0;pwned\x07"), "U\\+001B"),
        "2.0 with a caption": (f.but(minor=0), "unknown stream 'caption'"),
        "2.1 without": (f.but(streams=[(k, v) for k, v in f.streams if k != b"caption"]), "needs a 'caption'"),
    }
    for name, (forged, message) in cases.items():
        out, growth = peak_growth(lambda: decode_rgb(forged.bytes()))
        assert isinstance(out, FormatError) and re.search(message, str(out)), (name, out)
        assert growth < 16 << 20, (name, growth)


def test_mutants_of_the_caption_decode_or_are_lic_errors(described):
    rng = random.Random("issue24-caption")
    f = Forged.of(described)
    text = dict(f.streams)[b"caption"]
    counts = {"decoded": 0, "rejected": 0}
    for i in range(60):
        b = bytearray(text)
        if i % 3 == 0:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif i % 3 == 1:
            b = b[:rng.randrange(0, len(b))] + "ü".encode()[:rng.randint(1, 2)]
        else:
            b[rng.randrange(len(b))] = rng.randrange(256)
        forged = f.but(streams=[(k, bytes(b) if k == b"caption" else v) for k, v in f.streams])
        try:
            decode_rgb(forged.bytes())
            counts["decoded"] += 1
        except LicError:
            counts["rejected"] += 1
    assert counts["rejected"] > 10 and counts["decoded"] > 10, counts


def test_cli_encode_info_decode(tiny, photo, tmp_path):
    from liccodec.cli.main import main

    src = tmp_path / "p.png"
    Image.fromarray(photo).save(src)
    run = CliRunner().invoke
    r = run(main, ["encode", str(src), "-m", tiny, "-q", "2", "--caption", "Zwei Äpfel auf dem Tisch"])
    assert r.exit_code == 0, r.output
    r = run(main, ["info", str(tmp_path / "p.lic")])
    assert r.exit_code == 0 and "Zwei Äpfel auf dem Tisch" in r.output and "2.1" in r.output, r.output
    r = run(main, ["info", "--json", str(tmp_path / "p.lic")])
    assert '"caption": "Zwei \\u00c4pfel auf dem Tisch"' in r.output, r.output
    r = run(main, ["decode", str(tmp_path / "p.lic")])
    assert r.exit_code == 0 and "caption: Zwei Äpfel" in r.output, r.output
    r = run(main, ["encode", str(src), str(tmp_path / "q.lic"), "-m", tiny, "--caption", "bad\x1b"])
    assert r.exit_code == 2 and "U+001B" in r.output, r.output
    r = run(main, ["encode", str(src), str(tmp_path / "q.lic"), "-m", tiny, "--caption", "x", "--target-bpp", "1"])
    assert r.exit_code == 2 and "rate targets" in r.output, r.output
    bad = tmp_path / "bad.lic"
    f = Forged.of((tmp_path / "p.lic").read_bytes())
    bad.write_bytes(f.but(streams=[(k, b"\xff" if k == b"caption" else v) for k, v in f.streams]).bytes())
    r = run(main, ["decode", str(bad), str(tmp_path / "bad.png")])
    assert r.exit_code == 4 and "caption" in r.output and not (tmp_path / "bad.png").exists(), r.output
    r = run(main, ["info", str(bad)])
    assert r.exit_code == 4, r.output
