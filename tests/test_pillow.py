"""The Pillow plugin (liccodec.pillow): Image.open reads the header only, load() decodes,
save() encodes, through the public API, with liccodec's modes, limits and error texts.

Shipped models code two small crops of the bundled photo (module-scoped: every coding
loads a model); the mode tests use the tiny model.
"""
import io
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import liccodec
import liccodec.pillow
from liccodec.container import pack, read_header, unpack
from liccodec.errors import ChecksumError, FormatError, ModelError, VersionError
from liccodec.weights import DEFAULT_MODEL, get_spec


def _psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def crop() -> Image.Image:
    with resources.as_file(resources.files("liccodec") / "data" / "chelsea.png") as p:
        return Image.open(p).convert("RGB").crop((150, 60, 246, 124))  # 96x64, the cat's face


@pytest.fixture(scope="module")
def default_file(crop, tmp_path_factory):
    """``img.save("x.lic", quality=4)``: format from the suffix, the default model."""
    path = tmp_path_factory.mktemp("pillow") / "cat.lic"
    crop.save(path, quality=4)
    return path


@pytest.fixture(scope="module")
def msh_bytes(crop) -> bytes:
    """``img.save(fileobj, format="LIC", model="msh.mse", quality=3.5)``."""
    buf = io.BytesIO()
    crop.save(buf, format="LIC", model="msh.mse", quality=3.5)
    return buf.getvalue()


def test_round_trip_through_a_path(crop, default_file):
    with Image.open(default_file) as im:
        assert (im.format, im.size, im.mode) == ("LIC", (96, 64), "RGB")
        assert im.get_format_mimetype() == "image/x-lic"
        assert _psnr(im, crop) > 28  # 30.8 dB at quality 4 when written


def test_header_records_the_default_model_and_the_quality(default_file):
    h = read_header(default_file.read_bytes())
    assert (h.model_id, h.quality, h.width, h.height) == (DEFAULT_MODEL, 4000, 96, 64)
    assert h.digest == get_spec(DEFAULT_MODEL).digest


def test_save_to_a_file_object_with_model_and_quality(crop, msh_bytes):
    h = read_header(msh_bytes)
    assert (h.model_id, h.quality, h.digest) == ("msh.mse", 3500, get_spec("msh.mse").digest)
    with Image.open(io.BytesIO(msh_bytes)) as im:
        assert im.info == {"model": "msh.mse", "quality": 3.5, "weights_digest": h.digest.hex(),
                           "format_version": f"{h.major}.{h.minor}"}
        assert im.size == (96, 64) and _psnr(im, crop) > 27  # 29.8 dB when written


def test_open_reads_the_header_without_decoding(default_file, monkeypatch):
    def no_decoding(data):
        raise AssertionError("decoded")

    monkeypatch.setattr(liccodec, "decode", no_decoding)
    with Image.open(default_file) as im:
        assert (im.size, im.mode, im.info["model"], im.info["quality"]) == ((96, 64), "RGB", DEFAULT_MODEL, 4.0)
        with pytest.raises(AssertionError, match="decoded"):
            im.load()  # load() is where decoding happens, through liccodec.decode


def test_importing_and_opening_need_no_torch(default_file):
    code = ("import sys, liccodec.pillow; from PIL import Image; "
            f"im = Image.open({str(default_file)!r}); print(im.size, im.mode, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(96, 64) RGB False"


def _mode_image(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    if mode == "P+transparency":
        im = Image.fromarray(rgba[..., :3], "RGB").convert("P")
        im.info["transparency"] = 0
        return im
    if mode == "I;16":
        return Image.fromarray(rgba[..., 0].astype(np.uint16) * 257)
    return Image.fromarray(rgba, "RGBA").convert(mode)


@pytest.mark.parametrize("mode, reopened", [("RGBA", "RGBA"), ("LA", "LA"), ("L", "L"), ("P", "RGB"),
                                             ("P+transparency", "RGBA"), ("I;16", "I;16")])
def test_modes_are_those_of_lic_encode(tiny, mode, reopened):
    src = _mode_image(mode)
    buf = io.BytesIO()
    src.save(buf, format="LIC", model=tiny, quality=3)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.mode == reopened
        im.load()
        assert im.mode == reopened and im.size == src.size
        if "A" in reopened:  # alpha is kept losslessly, never dropped
            assert np.array_equal(np.asarray(im.getchannel("A")), np.asarray(src.convert(reopened).getchannel("A")))


def test_save_refuses_what_encode_refuses(crop, tmp_path, monkeypatch):
    out = tmp_path / "x.lic"
    with pytest.raises(ValueError, match="quality 90.0 is outside charm.mse's range"):
        crop.save(out, quality=90)
    with pytest.raises(OSError, match="unknown model 'nope'"):
        crop.save(out, model="nope")
    with pytest.raises(OSError, match="floating-point images are not supported"):
        crop.convert("F").save(out)
    monkeypatch.setenv("LICCODEC_MAX_PIXELS", "1000")
    with pytest.raises(OSError, match="over the limit of .* megapixels.*LICCODEC_MAX_PIXELS"):
        crop.save(out)
    assert not out.exists()  # Pillow removes what it created when the plugin raises


def _unknown_model(data: bytes) -> bytes:
    header, streams = unpack(data)
    header.model_id = "nope.mse"
    return pack(header, streams)


def _flip_last_payload_byte(data: bytes) -> bytes:
    b = bytearray(data)
    b[-5] ^= 0x40
    return bytes(b)


@pytest.mark.parametrize("damage, cause, text", [
    (lambda d: d[:12], FormatError, "header is shorter than its fields|exceeds the file"),
    (lambda d: d[:4] + b"\x06" + d[5:], VersionError, r"unsupported .lic format version 6\.0"),
])
def test_a_bad_header_fails_in_open_with_liccodecs_text(default_file, damage, cause, text):
    with pytest.raises(OSError, match=text) as e:
        Image.open(io.BytesIO(damage(default_file.read_bytes())))
    assert isinstance(e.value.__cause__, cause)


@pytest.mark.parametrize("damage, cause, text", [
    (lambda d: d[:-20], ChecksumError, "checksum mismatch"),
    (_flip_last_payload_byte, ChecksumError, "checksum mismatch"),
    (_unknown_model, ModelError, "needs model 'nope.mse', which is not installed"),
])
def test_bad_data_fails_in_load_with_liccodecs_text(default_file, damage, cause, text):
    data = damage(default_file.read_bytes())
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (96, 64)  # the header is fine
        with pytest.raises(OSError, match=text) as e:
            im.load()
        assert isinstance(e.value.__cause__, cause)
    if cause is ChecksumError:  # verify() finds it without decoding
        with Image.open(io.BytesIO(data)) as im, pytest.raises(OSError, match=text):
            im.verify()


def test_verify_passes_a_good_file(default_file):
    with Image.open(default_file) as im:
        im.verify()


def test_other_files_are_not_claimed(crop, tmp_path):
    png = tmp_path / "cat.lic"  # a PNG whatever its name
    crop.save(png, format="PNG")
    with Image.open(png) as im:
        assert im.format == "PNG"
    assert not liccodec.pillow._accept(png.read_bytes()[:16])
    with pytest.raises(UnidentifiedImageError):
        Image.open(png, formats=["LIC"])
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89LIX" + bytes(100)))
