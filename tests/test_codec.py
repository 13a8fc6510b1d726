"""End-to-end coding with the tiny model: exactness claims and image modes."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import liccodec
from liccodec.codec import decode_rgb
from liccodec.container import read_header
from liccodec.errors import ModelError, UsageError
from liccodec.imageio import pad_to_multiple, to_tensor
from liccodec.weights import load_model


def _latents(model_id, data):
    from liccodec.container import unpack

    header, streams = unpack(data)
    net = load_model(model_id)
    hp, wp = (-(-header.height // 64) * 64, -(-header.width // 64) * 64)
    return net.latent.decode_latents(streams, (hp // 64, wp // 64), header.quality)


def test_round_trip_size_and_determinism(tiny_each, photo):
    data = liccodec.encode(Image.fromarray(photo), model=tiny_each, quality=2.25)
    assert liccodec.encode(Image.fromarray(photo), model=tiny_each, quality=2.25) == data
    out = liccodec.decode(data)
    assert out.size == (photo.shape[1], photo.shape[0]) and out.mode == "RGB"
    h = read_header(data)
    assert (h.model_id, h.quality, h.width, h.height) == (tiny_each, 2250, 99, 70)


def test_decoder_latents_equal_encoder_latents(tiny_each, photo):
    net = load_model(tiny_each)
    x = pad_to_multiple(to_tensor(photo), 64)
    for q in (1000, 1500, 3000):
        streams, y_hat_enc = net.latent.compress(net.g_a(x), q)
        y_hat_dec = net.latent.decompress(streams, (x.shape[2] // 64, x.shape[3] // 64), q)
        assert torch.equal(y_hat_enc, y_hat_dec)


def test_latents_independent_of_threads_and_float_precision(tiny_each, photo):
    data = liccodec.encode(Image.fromarray(photo), model=tiny_each, quality=1.7)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _latents(tiny_each, data)
        torch.set_num_threads(2)
        two = _latents(tiny_each, data)
    finally:
        torch.set_num_threads(n)
    net = load_model(tiny_each)
    try:
        net.double()
        f64 = _latents(tiny_each, data)
    finally:
        net.float()
    for a, b in ((one, two), (one, f64)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_entropy_parameters_independent_of_batch(tiny):
    ex = load_model(tiny).latent.exact
    z = torch.randint(-20, 20, (3, 8, 2, 3))
    singles = [ex.hyper_params(z[i:i + 1], 2600) for i in range(3)]
    idx, means = ex.hyper_params(z, 2600)
    assert torch.equal(idx, torch.cat([s[0] for s in singles]))
    assert torch.equal(means, torch.cat([s[1] for s in singles]))


def test_file_size_matches_estimated_rate(tiny_each, tiny_builder):
    build_tiny, _ = tiny_builder
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(128, 40, (256, 256, 3)), 0, 255).astype(np.uint8)
    ref = build_tiny(arch=tiny_each.split(".")[0])
    x = to_tensor(img)
    for q in (1.0, 2.5, 3.0):
        data = liccodec.encode(Image.fromarray(img), model=tiny_each, quality=q)
        header = read_header(data)
        coded = sum(header.streams.values())
        with torch.no_grad():
            out = ref(x, torch.tensor([q - 1.0]))
        est = sum((-torch.log2(l)).sum().item() for l in out.likelihoods.values()) / 8
        assert abs(coded - est) <= 0.01 * est + 8 * len(header.streams), (q, coded, est)


def test_quality_range_is_enforced(tiny, photo):
    from liccodec.codec import quality_top
    from liccodec.weights import get_spec

    with pytest.raises(UsageError):  # above the residual layer's range (tests/test_residual.py)
        liccodec.encode(Image.fromarray(photo), model=tiny, quality=quality_top(get_spec(tiny)) + 0.5)
    with pytest.raises(UsageError):
        liccodec.encode(Image.fromarray(photo), model=tiny, quality=float("nan"))


def test_unknown_model_and_digest_mismatch(tiny, photo):
    with pytest.raises(ModelError):
        liccodec.encode(Image.fromarray(photo), model="msh.nope")
    data = bytearray(liccodec.encode(Image.fromarray(photo), model=tiny, quality=2))
    data[8 + len(tiny)] ^= 0xFF  # first digest byte: after magic, version, header length, model id
    import struct
    import zlib
    body = bytes(data[:-4])
    with pytest.raises(ModelError, match="other weights"):
        liccodec.decode(body + struct.pack("<I", zlib.crc32(body)))


# ---- image modes --------------------------------------------------------------------------

def _enc_dec(img, tiny):
    return liccodec.decode(liccodec.encode(img, model=tiny, quality=3))


def test_greyscale(tiny, photo):
    out = _enc_dec(Image.fromarray(photo).convert("L"), tiny)
    assert out.mode == "L" and out.size == (99, 70)


def test_rgba_alpha_is_lossless(tiny, photo):
    alpha = np.random.default_rng(0).integers(0, 256, photo.shape[:2], dtype=np.uint8)
    img = Image.fromarray(np.dstack([photo, alpha]), "RGBA")
    out = _enc_dec(img, tiny)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], alpha)


def test_la_and_palette(tiny, photo):
    la = Image.fromarray(photo).convert("LA")
    assert _enc_dec(la, tiny).mode == "LA"
    p = Image.fromarray(photo).convert("P")
    assert _enc_dec(p, tiny).mode == "RGB"
    pt = Image.fromarray(photo).convert("P")
    pt.info["transparency"] = 0
    assert _enc_dec(pt, tiny).mode == "RGBA"


def test_16_bit_greyscale(tiny, photo):
    g16 = (np.asarray(Image.fromarray(photo).convert("L")).astype(np.uint16) * 257)
    img = Image.fromarray(g16)
    data = liccodec.encode(img, model=tiny, quality=3)
    assert read_header(data).bit_depth == 16
    out = liccodec.decode(data)
    assert out.mode == "I;16" and out.size == (99, 70)


def test_exif_orientation_is_applied(tiny, photo):
    img = Image.fromarray(photo)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    out = liccodec.decode(liccodec.encode(buf.getvalue(), model=tiny, quality=3))
    assert out.size == (70, 99)


def test_tiny_images(tiny):
    for w, h in ((1, 1), (3, 130)):
        img = Image.fromarray(np.full((h, w, 3), 90, np.uint8))
        assert _enc_dec(img, tiny).size == (w, h)


def test_decode_rgb_is_8bit_plane(tiny, photo):
    _, rgb, alpha = decode_rgb(liccodec.encode(Image.fromarray(photo), model=tiny, quality=1))
    assert rgb.dtype == np.uint8 and rgb.shape == photo.shape and alpha is None


def test_decode_takes_a_path_like_encode(tiny, photo, tmp_path):
    """Issue 19.12: liccodec.decode("x.lic") decodes the file (bytes stay bytes)."""
    data = liccodec.encode(Image.fromarray(photo), model=tiny, quality=2)
    path = tmp_path / "x.lic"
    path.write_bytes(data)
    ref = np.asarray(liccodec.decode(data))
    np.testing.assert_array_equal(np.asarray(liccodec.decode(str(path))), ref)
    np.testing.assert_array_equal(np.asarray(liccodec.decode(path)), ref)
    np.testing.assert_array_equal(np.asarray(liccodec.decode(bytearray(data))), ref)
    with pytest.raises(UsageError):
        liccodec.decode(tmp_path / "missing.lic")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB and holds no pixels: tiny, huge on paper."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_huge_declared_image_gets_our_error_not_pillows_warning(tiny):
    """Issue 19.7: a 12000x12000 PNG is refused from its header (no pixel decoded, no
    DecompressionBombWarning leaking), with the limit and how to raise it."""
    import warnings

    from liccodec.errors import InputImageError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputImageError, match="12000x12000.*LICCODEC_MAX_PIXELS"):
            liccodec.encode(_png_header_only(12000, 12000), model=tiny)
        with pytest.raises(InputImageError, match="too big"):   # past Pillow's own hard limit
            liccodec.encode(_png_header_only(20000, 20000), model=tiny)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)], caught


def test_a_pillow_image_over_the_limit_is_refused_too(tiny, monkeypatch):
    """The limit bounds coding memory, so it holds for images already in memory as well."""
    from liccodec.errors import InputImageError

    monkeypatch.setenv("LICCODEC_MAX_PIXELS", "4000")
    with pytest.raises(InputImageError, match="LICCODEC_MAX_PIXELS"):
        liccodec.encode(Image.new("RGB", (100, 50)), model=tiny)


def test_multi_page_tiff_is_refused_unless_first_frame(tiny, photo):
    """Issue 19.9: frames are never dropped silently."""
    from liccodec.errors import InputImageError

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "TIFF", save_all=True, append_images=[Image.fromarray(photo[::-1])])
    with pytest.raises(InputImageError, match="2 frames"):
        liccodec.encode(buf.getvalue(), model=tiny)
    one = liccodec.encode(buf.getvalue(), model=tiny, first_frame=True)
    assert one == liccodec.encode(Image.fromarray(photo), model=tiny)
