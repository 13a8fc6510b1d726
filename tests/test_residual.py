"""The residual layer (liccodec.residual; format 5.0, and 4.0 read): qualities above a
model's ``residual_from`` (its top level unless its manifest names a lower one)."""
import time

import numpy as np
import pytest
import torch
from PIL import Image

import liccodec
from liccodec import residual
from liccodec.codec import decode_rgb, quality_bottom, quality_top
from liccodec.container import (RESIDUAL_MAJOR, RESIDUAL_STREAM, RESIDUAL_TOP_MAJOR, QMAP_STREAM, Header, Mode, pack,
                                read_header, unpack)
from liccodec.container.varint import decode as read_varint, encode as write_varint
from liccodec.errors import FormatError, LicError, UsageError
from liccodec.nn.wavelet import wavedec2
from liccodec.weights import get_spec


def _pair(seed=0, h=70, w=99, noise=6.0):
    """An image and a stand-in for its base layer (the image plus smooth and sharp errors)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.stack([128 + 90 * np.sin(xx / 7.0 + c) * np.cos(yy / 11.0) for c in range(3)], -1)
    x = np.clip(x + rng.normal(0, 10, x.shape), 0, 255).astype(np.uint8)
    x_hat = np.clip(x + rng.normal(0, noise, x.shape), 0, 255).astype(np.uint8)
    return x, x_hat


def _psnr(a, b):
    return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2))


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_numpy_wavelet_matches_the_torch_one_and_inverts(levels):
    x = np.random.default_rng(1).normal(size=(3, 32, 48)).astype(np.float32)
    bands = residual.wavedec(x, levels)
    p = wavedec2(torch.from_numpy(x), "cdf97", levels)
    ref = [p.low.numpy()]
    for hi in reversed(p.highs):  # torch: finest first, LH, HL, HH stacked by channel
        hi = hi.numpy()
        ref += [hi[0:3], hi[3:6], hi[6:9]]
    assert len(bands) == len(ref) == 1 + 3 * levels
    for a, b in zip(bands, ref):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(residual.waverec(bands), x, atol=1e-4)


def test_colour_transform_is_orthonormal():
    r = np.random.default_rng(2).normal(size=(5, 7, 3)).astype(np.float32)
    c = residual._to_colour(r)
    np.testing.assert_allclose((c ** 2).sum(), (r ** 2).sum(), rtol=1e-5)
    np.testing.assert_allclose(residual._from_colour(c), r, atol=1e-5)


def test_tables_are_fixed_and_cover_their_range():
    t = residual.tables()
    assert len(t) == residual.TABLES
    assert np.all(t.lengths % 2 == 1) and np.all(t.offsets == -(t.lengths // 2))
    for k in (0, 31, residual.TABLES - 1):
        row = t.pmf[k, : t.lengths[k] + 1]
        assert np.all(row > 0) and row.argmax() == t.lengths[k] // 2  # peaked at zero, escape > 0
    residual.tables.cache_clear()
    assert np.array_equal(residual.tables().pmf, t.pmf)  # built by IEEE basic operations only


@pytest.mark.parametrize("shape", [(70, 99), (1, 1), (5, 3), (64, 64)])
def test_round_trip_improves_on_the_base_and_is_deterministic(shape):
    x, x_hat = _pair(h=shape[0], w=shape[1])
    data = residual.encode(x, x_hat, 4 * residual.STEP_UNIT)
    assert residual.encode(x, x_hat, 4 * residual.STEP_UNIT) == data
    out = residual.decode(data, x_hat)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert np.array_equal(residual.decode(data, x_hat), out)
    if x.size > 30:
        assert _psnr(out, x) > _psnr(x_hat, x) + 3


def test_finer_steps_cost_more_and_give_more():
    x, x_hat = _pair()
    sizes, psnrs = [], []
    for step in (16, 8, 4, 2, 1):
        data = residual.encode(x, x_hat, step * residual.STEP_UNIT)
        sizes.append(len(data))
        psnrs.append(_psnr(residual.decode(data, x_hat), x))
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs)
    assert psnrs[-1] > 50  # step 1: within rounding of the image


def test_step_for_halves_with_each_quality():
    assert residual.step_for(8001, 8000) == pytest.approx(64 * residual.STEP_UNIT, rel=1e-3)
    assert residual.step_for(12000, 8000) == 4 * residual.STEP_UNIT
    assert residual.step_for(12000, 7000) == 2 * residual.STEP_UNIT  # charm.mse's finest: from 7 to 12
    steps = [residual.step_for(6000 + d, 6000) for d in range(1, 6001, 250)]
    assert steps == sorted(steps, reverse=True)


def _fields(data: bytes):
    """(levels, step, bias, choices, words, escapes) of a residual stream."""
    from liccodec.container.varint import decode as varint

    step, pos = varint(data, 1)
    bias = data[pos]
    n, pos = varint(data, pos + 1)
    choices, pos = data[pos: pos + n], pos + n
    nw, pos = varint(data, pos)
    return data[0], step, bias, choices, data[pos: pos + nw], data[pos + nw:]


def _stream(levels, step, bias, choices, words, escapes):
    from liccodec.container.varint import encode as varint

    return bytes([levels]) + varint(step) + bytes([bias]) + varint(len(choices)) + choices + varint(len(words)) + words + escapes


def test_malformed_streams_are_format_errors():
    import zlib

    x, x_hat = _pair()
    data = residual.encode(x, x_hat, 3 * residual.STEP_UNIT)
    for cut in list(range(0, 12)) + list(range(12, len(data), max(1, len(data) // 40))):
        with pytest.raises(FormatError):
            residual.decode(data[:cut], x_hat)
    levels, step, bias, choices, words, escapes = _fields(data)
    bad = [
        _stream(0, step, bias, choices, words, escapes),
        _stream(residual.MAX_LEVELS + 1, step, bias, choices, words, escapes),
        _stream(levels, 0, bias, choices, words, escapes),
        _stream(levels, step, bias, choices[:-1], words, escapes),
        _stream(levels, step, bias, zlib.compress(zlib.decompress(choices) + b"\0"), words, escapes),
        _stream(levels, step, bias, b"not zlib", words, escapes),
        _stream(levels, step, bias, choices, words + bytes([1, 0, 0, 0]), escapes),
        _stream(levels, step, bias, choices, words, escapes + b"\x05"),
        data + b"\x00",
    ]
    for stream in bad:
        with pytest.raises(FormatError):
            residual.decode(stream, x_hat)


def test_escapes_stay_inside_int32():
    """Coefficients are held in int32: an escape carries at most entropy.ESCAPE_LIMIT - 1, and
    one beyond it is refused before it reaches the arrays."""
    from liccodec.container.varint import decode as varint, encode as unsigned
    from liccodec.entropy.tables import ESCAPE_LIMIT

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    x_hat = (255 - x).astype(np.uint8)
    data = residual.encode(x, x_hat, 1)  # a step of 1/64: values beyond the tables, escaped
    levels, step, bias, choices, words, escapes = _fields(data)
    assert escapes and np.array_equal(residual.decode(data, x_hat), x)
    assert 4 * 4 * ESCAPE_LIMIT < 2 ** 31  # the phase-0 activity: 4 x (parent + siblings)
    first_end = varint(escapes, 0)[1]
    for value in (ESCAPE_LIMIT, -ESCAPE_LIMIT - 1):
        zigzag = 2 * value if value >= 0 else -2 * value - 1
        forged = _stream(levels, step, bias, choices, words, unsigned(zigzag) + escapes[first_end:])
        with pytest.raises(FormatError, match="out of range"):
            residual.decode(forged, x_hat)


def test_a_tiny_stream_cannot_claim_a_big_image():
    x, x_hat = _pair(h=16, w=16)
    data = residual.encode(x, x_hat, 8 * residual.STEP_UNIT)
    big = np.zeros((4096, 4096, 3), np.uint8)
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="too short"):
        residual.decode(data, big)
    assert time.perf_counter() - t0 < 2.0  # refused before the coefficients are decoded


@pytest.fixture()
def tiny_from_below(tiny_models_dir, tmp_path, monkeypatch):
    """The tiny msh with ``residual_from`` one level below its top, as charm.mse's."""
    import json

    raw = json.loads((tiny_models_dir / "manifest.json").read_text())
    entry = raw["models"]["msh.tiny"]
    entry["quality"]["residual_from"] = entry["quality"]["max"] - 1
    (tmp_path / entry["file"]).symlink_to(tiny_models_dir / entry["file"])
    (tmp_path / "manifest.json").write_text(json.dumps({**raw, "models": {"msh.tiny": entry}}))
    monkeypatch.setenv("LICCODEC_MODELS", str(tmp_path))
    return "msh.tiny"


def _base_of(data: bytes) -> int:
    from liccodec.codec import residual_parts

    return residual_parts(read_header(data).major, unpack(data)[1][RESIDUAL_STREAM])[0]


@pytest.mark.parametrize("below", [False, True])
def test_codec_codes_above_residual_from_as_format_5(request, below, photo):
    # the plain tiny model's layer starts at its top level
    model = request.getfixturevalue("tiny_from_below" if below else "tiny")
    spec = get_spec(model)
    start = spec.quality_max - 1 if below else spec.quality_max
    img = Image.fromarray(photo)
    plain = liccodec.encode(img, model=model, quality=start)
    assert read_header(plain).major == 2
    last, size = _psnr(decode_rgb(plain)[1], photo), len(plain)
    for q in (start + 0.01, start + 0.5, start + 1, start + 2, quality_top(spec)):
        data = liccodec.encode(img, model=model, quality=q)
        assert len(data) > size  # never fewer bytes, never a lower PSNR (below) for a higher quality
        size = len(data)
        h = read_header(data)
        assert (h.major, h.quality) == (RESIDUAL_MAJOR, round(q * 1000))
        assert _base_of(data) == round(start * 1000)  # the latents' quality, in the stream
        out = np.asarray(liccodec.decode(data))
        assert out.shape == photo.shape
        assert _psnr(out, photo) > last
        last = _psnr(out, photo)
    assert last > 45


def _as_format_4(data: bytes) -> bytes:
    """A 5.0 file over the top level rewritten as the 4.0 file liccodec 0.2 wrote: no base field."""
    import struct
    import zlib

    header, streams = unpack(data)
    stream = streams[RESIDUAL_STREAM]
    streams[RESIDUAL_STREAM] = stream[read_varint(stream, 0)[1]:]
    out = bytearray(pack(header, streams))
    out[4] = RESIDUAL_TOP_MAJOR
    out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
    return bytes(out)


def test_format_4_files_still_decode(tiny, photo):
    spec = get_spec(tiny)
    data = liccodec.encode(Image.fromarray(photo), model=tiny, quality=spec.quality_max + 1)
    old = _as_format_4(data)
    assert read_header(old).major == RESIDUAL_TOP_MAJOR
    assert np.array_equal(decode_rgb(old)[1], decode_rgb(data)[1])
    header, streams = unpack(data)
    header.quality = round(spec.quality_max * 1000)  # a 4.0 file's quality lies above the top
    with pytest.raises(FormatError, match="residual range"):
        decode_rgb(_as_format_4(pack(header, streams)))


def test_a_region_above_residual_from_keeps_the_models_levels(tiny_from_below, photo):
    """--roi codes its qualities with the model's own levels (a 3.0 file), also where a
    uniform quality that high would build a residual layer; a uniform request still does."""
    spec = get_spec(tiny_from_below)
    img = Image.fromarray(photo)
    mask = np.zeros(photo.shape[:2], bool)
    mask[:32] = True
    data = liccodec.encode(img, model=tiny_from_below, quality=spec.quality_max, roi=mask)
    h = read_header(data)
    assert h.major == 3 and RESIDUAL_STREAM not in h.streams
    assert liccodec.decode(data).size == img.size
    whole = liccodec.encode(img, model=tiny_from_below, quality=spec.quality_max, roi=np.ones_like(mask))
    assert whole == liccodec.encode(img, model=tiny_from_below, quality=spec.quality_max)
    assert read_header(whole).major == RESIDUAL_MAJOR


def test_the_base_field_is_checked(tiny_from_below, photo):
    spec = get_spec(tiny_from_below)
    q = spec.quality_max + 1
    header, streams = unpack(liccodec.encode(Image.fromarray(photo), model=tiny_from_below, quality=q))
    body = streams[RESIDUAL_STREAM][read_varint(streams[RESIDUAL_STREAM], 0)[1]:]
    lo, top = round(quality_bottom(spec) * 1000), round(spec.quality_max * 1000)
    for base in (top, lo):  # other bases in the range decode (to another picture)
        assert decode_rgb(pack(header, {**streams, RESIDUAL_STREAM: write_varint(base) + body}))[1].shape == photo.shape
    for base in [top + 1, 2 ** 32 - 1] + ([lo - 1] if lo else []):
        with pytest.raises(FormatError, match="residual layer over quality"):
            decode_rgb(pack(header, {**streams, RESIDUAL_STREAM: write_varint(base) + body}))
    header.quality = top - 1000  # not above its base
    with pytest.raises(FormatError, match="residual layer over quality"):
        decode_rgb(pack(header, {**streams, RESIDUAL_STREAM: write_varint(top - 1000) + body}))


def test_every_architecture_codes_above_its_top(tiny_each, photo):
    spec = get_spec(tiny_each)
    img = Image.fromarray(photo)
    top = liccodec.encode(img, model=tiny_each, quality=spec.quality_max)
    data = liccodec.encode(img, model=tiny_each, quality=spec.quality_max + 1.5)
    assert read_header(data).major == RESIDUAL_MAJOR and len(data) > len(top)
    assert _psnr(np.asarray(liccodec.decode(data)), photo) > _psnr(decode_rgb(top)[1], photo)


def test_every_mode_and_the_analysis_path_code_above_the_top(tiny, photo):
    from liccodec.codec import analyse, encode_analysis
    from liccodec.imageio import split

    spec = get_spec(tiny)
    q = spec.quality_max + 1
    img = Image.fromarray(photo)
    data = liccodec.encode(img, model=tiny, quality=q)
    assert encode_analysis(analyse(split(img), tiny), round(q * 1000)).data == data
    for mode in ("L", "RGBA", "LA"):
        src = img.convert(mode)
        out = liccodec.decode(liccodec.encode(src, model=tiny, quality=q))
        assert out.mode == mode and out.size == src.size
        if "A" in mode:
            assert np.array_equal(np.asarray(out)[..., -1], np.asarray(src)[..., -1])


def test_what_does_not_combine_with_the_residual_layer(tiny, photo):
    spec = get_spec(tiny)
    img = Image.fromarray(photo)
    mask = np.zeros(photo.shape[:2], bool)
    mask[:20] = True
    with pytest.raises(UsageError, match="whole image"):
        liccodec.encode(img, model=tiny, quality=spec.quality_max + 1, roi=mask)
    with pytest.raises(ValueError, match="not both"):
        pack(Header(tiny, spec.digest, 8, 8, Mode.RGB, 8, 1000), {"ans": b"1234", QMAP_STREAM: b"q",
                                                                RESIDUAL_STREAM: b"r"})


def test_a_broken_residual_layer_is_a_clean_error(tiny, photo):
    spec = get_spec(tiny)
    data = liccodec.encode(Image.fromarray(photo), model=tiny, quality=spec.quality_max + 1)
    header, streams = unpack(data)
    for broken in (streams[RESIDUAL_STREAM][:5], streams[RESIDUAL_STREAM][:2] + b"\x09",
                   b"\xff\xff\xff\xff\xff\xff"):
        with pytest.raises(FormatError):
            liccodec.decode(pack(header, {**streams, RESIDUAL_STREAM: broken}))
    for q in (round(quality_top(spec) * 1000) + 1,):  # above top + 4
        header.quality = q
        with pytest.raises(FormatError, match="residual range"):
            liccodec.decode(pack(header, streams))
    header.quality = round(spec.quality_max * 1000) + 500
    no_layer = {k: v for k, v in streams.items() if k != RESIDUAL_STREAM}
    forged = bytearray(pack(header, no_layer))  # a 2.0 file whose major says 5
    forged[4] = RESIDUAL_MAJOR
    import struct
    import zlib
    forged[-4:] = struct.pack("<I", zlib.crc32(bytes(forged[:-4])))
    with pytest.raises(LicError, match="needs a 'residual' stream"):
        liccodec.decode(bytes(forged))
