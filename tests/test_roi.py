"""Region-of-interest coding (docs/roi.md): a quality per latent position through the gain units.

The tiny models check the mechanics for every architecture (exact latents, the plain file
for a uniform map, tiling, the numpy decoder against torch, bad requests); the shipped
models check that the region really gets its quality."""
from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import liccodec
from liccodec import runtime
from liccodec.codec import decode_rgb, list_models
from liccodec.container import QMAP_STREAM, QualityMap, read_header, unpack
from liccodec.errors import InputImageError, UsageError
from liccodec.eval.roi import central_ellipse, masked_psnr
from liccodec.imageio import pad_to_multiple, to_tensor, to_uint8
from liccodec.roi import QualityRequest
from liccodec.tiling import TilePolicy
from liccodec.weights import get_spec, load_model

SHIPPED = [s.id for s in list_models() if s.id in ("msh.mse", "charm.mse")]


@pytest.fixture()
def tiny_roi(tiny_each):
    """``tiny_each`` for the architectures whose latent codec takes a quality per position
    (``LatentCodec.spatial_quality``); the others refuse a map (``octave``: its tests)."""
    if not load_model(tiny_each).latent.spatial_quality:
        pytest.skip(f"{tiny_each} codes one quality per image")
    return tiny_each


def _left(photo: np.ndarray) -> np.ndarray:
    """A mask of the image's left 40 columns."""
    mask = np.zeros(photo.shape[:2], bool)
    mask[:, :40] = True
    return mask


def _qmap(data: bytes, model_id: str) -> np.ndarray:
    header, streams = unpack(data)
    net = load_model(model_id)
    hp, wp = -(-header.height // 64) * 64, -(-header.width // 64) * 64
    return QualityMap.from_bytes(streams[QMAP_STREAM], (hp // net.y_stride, wp // net.y_stride)).milli()


def test_a_mask_round_trips_with_the_encoders_exact_latents(tiny_roi, photo, monkeypatch):
    monkeypatch.setenv("LICCODEC_PRECISION", "fp32")
    data = liccodec.encode(Image.fromarray(photo), model=tiny_roi, quality=3, roi=_left(photo), roi_background=1)
    header = read_header(data)
    assert (header.major, header.minor) == (3, 0) and QMAP_STREAM in header.streams
    qmap = _qmap(data, tiny_roi)
    assert qmap.shape == (8, 8) and set(np.unique(qmap)) == {1000, 3000}
    # 40 columns of 99 touch y columns 0..2 (16 px each): the region and no more
    assert (qmap[:, :3] == 3000).all() and (qmap[:, 3:] == 1000).all()
    assert header.quality == round(qmap.mean())            # the base quality: the map's mean
    net = load_model(tiny_roi)
    y = net.analysis(pad_to_multiple(to_tensor(photo), 64), "fp32")
    streams, y_hat = net.latent.compress(y, header.quality, None, qmap)
    assert streams["ans"] == unpack(data)[1]["ans"]
    assert torch.equal(net.latent.decompress(streams, (2, 2), header.quality, None, qmap), y_hat)
    _, rgb, _ = decode_rgb(data)
    assert rgb.shape == photo.shape


@torch.no_grad()
def test_the_map_enters_only_the_float_gains(tiny_roi, photo):
    """The integers (symbols, means) decode without the map: it is not an input of the exact
    path. The decoder's y_hat is those integers times each position's own inverse gain."""
    net = load_model(tiny_roi)
    y = net.g_a(pad_to_multiple(to_tensor(photo), 64))
    qmap = np.full((8, 8), 1000)
    qmap[:, :4] = 3000
    streams, y_hat = net.latent.compress(y, 2000, None, qmap)
    gained = net.latent._y_hat(*net.latent.decode_latents(streams, (2, 2), 2000), None)
    _, ig3 = net.latent.gain(torch.tensor([2.0]))
    _, ig1 = net.latent.gain(torch.tensor([0.0]))
    assert torch.equal(y_hat[..., :4], (gained * ig3)[..., :4])
    assert torch.equal(y_hat[..., 4:], (gained * ig1)[..., 4:])


@pytest.mark.parametrize("how", ["white", "black", "grey"])
def test_a_uniform_map_writes_the_plain_file_bit_for_bit(tiny_roi, photo, how):
    img = Image.fromarray(photo)
    if how == "white":
        data = liccodec.encode(img, model=tiny_roi, quality=2.5, roi=np.ones(photo.shape[:2], bool))
        plain = liccodec.encode(img, model=tiny_roi, quality=2.5)
    elif how == "black":
        data = liccodec.encode(img, model=tiny_roi, quality=2.5, roi=np.zeros(photo.shape[:2], bool),
                               roi_background=1.5)
        plain = liccodec.encode(img, model=tiny_roi, quality=1.5)
    else:
        grey = np.full(photo.shape[:2], 51, np.uint8)    # 1 + 2 * 51 / 255 = 1.4
        data = liccodec.encode(img, model=tiny_roi, quality_map=grey, quality_range=(1, 3))
        plain = liccodec.encode(img, model=tiny_roi, quality=1.4)
    assert data == plain and read_header(data).major == 2


def test_the_per_position_path_with_one_quality_is_the_plain_path(tiny_roi, photo):
    """Not just the same file by taking the plain path: the per-position gains of a uniform
    map are the uniform gains, to the bit, in the encoder and in both decoders."""
    net = load_model(tiny_roi)
    y = net.g_a(pad_to_multiple(to_tensor(photo), 64))
    uniform = np.full((8, 8), 2350)
    streams, y_hat = net.latent.compress(y, 2350, None, uniform)
    plain_streams, plain_y_hat = net.latent.compress(y, 2350)
    assert streams == plain_streams and torch.equal(y_hat, plain_y_hat)
    assert torch.equal(net.latent.decompress(streams, (2, 2), 2350, None, uniform), plain_y_hat)
    if get_spec(tiny_roi).arch in runtime.SUPPORTED:
        dec = runtime.load_decoder(tiny_roi)
        assert np.array_equal(dec.decode(streams, (128, 128), 2350, qmap=uniform),
                              dec.decode(streams, (128, 128), 2350))


def test_a_grey_map_sets_qualities_linearly_with_the_block_maximum(tiny, photo):
    grey = np.zeros(photo.shape[:2], np.uint8)
    grey[:, 16:32] = 255        # exactly y column 1
    grey[0, 40] = 128           # one pixel lifts its whole 16x16 block (y row 0, column 2)
    data = liccodec.encode(Image.fromarray(photo), model=tiny, quality_map=grey, quality_range=(1.2, 2.8))
    q = _qmap(data, tiny)
    assert (q[:, 1] == 2800).all() and q[0, 2] == round(1200 + 1600 * 128 / 255)
    assert (q[:, 0] == 1200).all() and (q[1:, 2:] == 1200).all()
    req = QualityRequest(np.full((70, 99), 255, np.uint8), 3000, 1000)   # inverted: white is low
    assert (req.latent_qualities(16, 64) == 1000).all()


@pytest.mark.parametrize("encode_tiled", [False, True])
def test_tiled_equals_whole(tiny_roi, monkeypatch, encode_tiled):
    monkeypatch.setenv("LICCODEC_PRECISION", "fp32")
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:200, 0:300]
    img = np.clip(np.stack([xx * 0.8, yy * 1.1, (xx + yy) * 0.4], axis=2) + 60 * np.sin(xx / 9.0)[..., None]
                  + rng.normal(0, 10, (200, 300, 3)), 0, 255).astype(np.uint8)
    mask = central_ellipse(300, 200)
    if encode_tiled:
        monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "0")
        monkeypatch.setenv("LICCODEC_TILE_SIZE", "64")
    data = liccodec.encode(Image.fromarray(img), model=tiny_roi, quality=3, roi=mask, roi_background=1.2)
    header, streams = unpack(data)
    qmap = _qmap(data, tiny_roi)
    net = load_model(tiny_roi)
    whole = net.decompress(streams, (256, 320), header.quality, "fp32", TilePolicy.never(), qmap)
    tiled = net.decompress(streams, (256, 320), header.quality, "fp32", TilePolicy(0, 64), qmap)
    assert (whole - tiled).abs().max() <= 1 / 255
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "-1")
    _, rgb_whole, _ = decode_rgb(data)
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "0")
    monkeypatch.setenv("LICCODEC_TILE_SIZE", "64")
    _, rgb_tiled, _ = decode_rgb(data)
    assert np.abs(rgb_whole.astype(int) - rgb_tiled.astype(int)).max() <= 1


def test_the_numpy_decoder_agrees_with_torch(tiny_each, photo):
    if get_spec(tiny_each).arch not in runtime.SUPPORTED:
        pytest.skip("the numpy decoder does not run this architecture")
    data = liccodec.encode(Image.fromarray(photo), model=tiny_each, quality=2.7, roi=_left(photo),
                           roi_background=1.1)
    header, streams = unpack(data)
    qmap = _qmap(data, tiny_each)
    with torch.inference_mode():
        ref = to_uint8(load_model(tiny_each).decompress(streams, (128, 128), header.quality, "fp32", qmap=qmap))
    out = runtime.load_decoder(tiny_each).decode(streams, (128, 128), header.quality, qmap=qmap)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert not np.array_equal(out, runtime.load_decoder(tiny_each).decode(streams, (128, 128), header.quality))


def test_an_architecture_without_per_position_gains_is_refused_when_encoding(tiny, photo, monkeypatch,
                                                                            torch_encoder):
    net = load_model(tiny)  # torch_encoder: encoding runs this model, whose class is patched
    monkeypatch.setattr(type(net.latent), "spatial_quality", False)
    with pytest.raises(UsageError, match="cannot vary the quality"):
        liccodec.encode(Image.fromarray(photo), model=tiny, quality=3, roi=_left(photo))
    with pytest.raises(ValueError, match="cannot code a quality per position"):
        net.latent.compress(net.g_a(pad_to_multiple(to_tensor(photo), 64)), 2000, None, np.full((8, 8), 2000))


@pytest.mark.parametrize("kwargs,message", [
    (dict(roi=np.ones((70, 98), bool)), "98x70 pixels; it must be the image's size, 99x70"),
    (dict(roi=np.ones((70, 99, 3), bool)), "2-d array"),
    (dict(roi=np.full((70, 99), 300)), "outside 0..255"),
    (dict(roi=np.full((70, 99), 0.5)), "booleans or integers"),
    (dict(quality=3, roi=np.ones((70, 99), bool), roi_background=0.5), "outside msh.tiny's range"),
    (dict(quality=3.5, roi=np.ones((70, 99), bool)), "outside msh.tiny's range"),
    (dict(roi_background=1), "--roi-background needs --roi"),
    (dict(quality_range=(1, 2)), "--quality-range needs --quality-map"),
    (dict(roi=np.ones((70, 99), bool), quality_map=np.ones((70, 99), bool)), "exclude each other"),
    (dict(quality=2, quality_map=np.ones((70, 99), bool)), "exclude each other"),
    (dict(quality_map=np.ones((70, 99), bool), quality_range=(3, 1)), "must not exceed"),
    (dict(quality_map=np.ones((70, 99), bool), quality_range=(1, 9)), "outside msh.tiny's range"),
])
def test_bad_requests_are_usage_errors(tiny, photo, kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        liccodec.encode(Image.fromarray(photo), model=tiny, **kwargs)


def test_an_unreadable_mask_is_an_input_error(tiny, photo):
    with pytest.raises(InputImageError):
        liccodec.encode(Image.fromarray(photo), model=tiny, roi=b"not an image")


def test_the_cli(tiny, photo, tmp_path):
    from liccodec.cli.main import main

    Image.fromarray(photo).save(tmp_path / "in.png")
    Image.fromarray(_left(photo).astype(np.uint8) * 255).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    run = CliRunner().invoke
    r = run(main, ["encode", str(tmp_path / "in.png"), "-m", tiny, "-q", "3", "--roi", str(tmp_path / "mask.png"),
                   "--roi-background", "1", "-v"])
    assert r.exit_code == 0, r.output
    assert "qualities 1-3" in r.output and "(ROI " in r.output and "outside " in r.output
    data = (tmp_path / "in.lic").read_bytes()
    assert data == liccodec.encode(tmp_path / "in.png", model=tiny, quality=3, roi=tmp_path / "mask.png",
                                   roi_background=1)
    r = run(main, ["info", str(tmp_path / "in.lic")])
    assert r.exit_code == 0 and "quality_map     1, 3" in r.output and "3.0" in r.output
    r = run(main, ["decode", str(tmp_path / "in.lic")])
    assert r.exit_code == 0 and (tmp_path / "in.decoded.png").exists()
    r = run(main, ["encode", str(tmp_path / "in.png"), str(tmp_path / "x.lic"), "-m", tiny, "--quality-map",
                   str(tmp_path / "mask.png"), "--quality-range", "1.5,2.5", "--overwrite"])
    assert r.exit_code == 0, r.output
    for args, code in ((["--roi", str(tmp_path / "small.png")], 2), (["--roi", str(tmp_path / "nope.png")], 3),
                       (["--quality-map", str(tmp_path / "mask.png"), "--quality-range", "2"], 2),
                       (["--roi", str(tmp_path / "mask.png"), "--target-size", "2k"], 2)):
        r = run(main, ["encode", str(tmp_path / "in.png"), str(tmp_path / "o.lic"), "-m", tiny, *args])
        assert r.exit_code == code, (args, r.output)
    r = run(main, ["encode", str(tmp_path), "-o", str(tmp_path / "out"), "-m", tiny, "--roi",
                   str(tmp_path / "mask.png")])
    assert r.exit_code == 2 and "not a folder" in r.output


def _crop() -> np.ndarray:
    with resources.as_file(resources.files("liccodec") / "data" / "chelsea.png") as p:
        return np.asarray(Image.open(p).convert("RGB"))[60:188, 150:278]


@pytest.mark.parametrize("model_id", SHIPPED)
def test_the_shipped_models_give_the_region_its_quality(model_id):
    """128x128 crop, a central ellipse at quality 7 in a background at 2: the region's PSNR
    is close to a uniform 7 file's, the background's to a uniform 2 file's, and the file's
    size lies between theirs; both decoders agree."""
    img = _crop()
    mask = central_ellipse(128, 128)
    pil = Image.fromarray(img)
    data = liccodec.encode(pil, model=model_id, quality=7, roi=mask, roi_background=2)
    hi, lo = (liccodec.encode(pil, model=model_id, quality=q) for q in (7, 2))
    rgb, rgb_hi, rgb_lo = (decode_rgb(d)[1] for d in (data, hi, lo))
    inside, outside = masked_psnr(img, rgb, mask), masked_psnr(img, rgb, ~mask)
    assert inside > masked_psnr(img, rgb_hi, mask) - 1.0
    assert inside > masked_psnr(img, rgb_lo, mask) + 3.0
    assert abs(outside - masked_psnr(img, rgb_lo, ~mask)) < 1.0
    assert len(lo) < len(data) < len(hi)
    header, streams = unpack(data)
    qmap = _qmap(data, model_id)
    with torch.inference_mode():
        ref = to_uint8(load_model(model_id).decompress(streams, (128, 128), header.quality, "fp32", qmap=qmap))
    assert np.abs(ref.astype(int) - rgb.astype(int)).max() <= 1


def test_roi_bench_compares_at_equal_size(tiny, tmp_path):
    from liccodec.cli.main import main

    yy, xx = np.mgrid[0:128, 0:192]
    img = np.clip(np.stack([xx * 1.2, yy * 1.5, (xx + yy) * 0.6], axis=2) + 50 * np.sin(xx / 5.0)[..., None],
                  0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    r = CliRunner().invoke(main, ["roi-bench", str(tmp_path / "in.png"), "-m", tiny, "--pair", "3,1",
                                  "--json", str(tmp_path / "roi.json")])
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "roi.json").read_text())["rows"][0]
    assert row["uniform"]["bytes"] <= row["roi"]["bytes"] and "| in.png | 3 / 1 |" in r.output
