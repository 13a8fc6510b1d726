"""The numpy encoder (``liccodec.runtime.encoder``) against the torch models it stands in for:
y within float rounding of torch's fp32 y, the same symbols and bytes from the same y (and
from the same gained latents, whatever h_a's rounding), the same files for every feature
``liccodec.encode`` has, tiled or whole, and no torch import on the way."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import liccodec
from liccodec import codec, runtime
from liccodec.codec import analyse, decode_rgb, encode_analysis, encode_planes
from liccodec.container import unpack
from liccodec.entropy import reader_of
from liccodec.imageio import pad_to_multiple, split, to_padded_array, to_tensor
from liccodec.latent.base import level_of_quality
from liccodec.runtime.encoder import Encoder, load_encoder
from liccodec.tiling import TilePolicy
from liccodec.weights import get_spec, load_model

# ../shared next to the checkout; absent in a user's clone, where the Kodak test skips
KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak"
SMALL = TilePolicy(threshold=0, tile=64)


@pytest.fixture(params=runtime.SUPPORTED)
def numpy_each(request, tiny_models_dir, monkeypatch):
    """The tiny model of each architecture the numpy encoder runs (``tiny_each`` for those)."""
    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    return f"{request.param}.tiny"


def _torch_y(net, rgb: np.ndarray, precision: str = "fp32", tiles: TilePolicy | None = None) -> torch.Tensor:
    with torch.inference_mode():
        return net.analysis(pad_to_multiple(to_tensor(rgb), net.downsampling), precision,
                            TilePolicy.never() if tiles is None else tiles)


def _torch_gained(net, y: torch.Tensor, q: int, qmap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """torch's (y_g, z_g) of ``GainedHyperprior.encode``, fp32."""
    lat = net.latent
    with torch.inference_mode():
        g, _ = lat.gains(q, qmap, 1, y.device)
        hg, _ = lat.hyper_gain(torch.full((1,), level_of_quality(q)))
        y_g = y.float() * g
        return y_g.numpy(), (lat.h_a(y_g) * hg).numpy()


def _symbols(model_id: str, data: bytes) -> np.ndarray:
    header, streams = unpack(data)
    dec = runtime.load_decoder(model_id)
    hw = (-(-header.height // 64), -(-header.width // 64))
    reader = reader_of(streams)
    y_sym, _ = dec.decode_latents(reader, hw, header.quality, None)
    reader.finish()
    return y_sym


# ---- the float part ----------------------------------------------------------------------
def test_padded_input_is_the_torch_models(photo):
    x = to_padded_array(photo, 64)
    assert x.dtype == np.float32 and x.shape == (128, 128, 3)
    assert np.array_equal(x, pad_to_multiple(to_tensor(photo), 64)[0].permute(1, 2, 0).numpy())


def test_analysis_and_gains_are_the_torch_models(numpy_each, photo):
    net, enc = load_model(numpy_each), load_encoder(numpy_each)
    yt = _torch_y(net, photo).numpy()
    y = enc.analysis(to_padded_array(photo, 64), TilePolicy.never())
    assert y.shape == yt.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, yt, rtol=0, atol=1e-5 * np.abs(yt).max())
    qmap = np.random.default_rng(0).choice([1000, 1450, 2000, 3000], size=yt.shape[-2:])
    for q, m in ((1000, None), (2350, None), (3000, None), (2000, qmap)):
        with torch.inference_mode():
            g = net.latent.gains(q, m, 1, torch.device("cpu"))[0].numpy()
        np.testing.assert_allclose(enc.gains(q, m), g, rtol=1e-6)


def test_tiled_analysis_is_whole_analysis_and_torchs(numpy_each, photo):
    big = np.tile(photo, (3, 3, 1))  # 210 x 297: several 64-pixel tiles
    net, enc = load_model(numpy_each), load_encoder(numpy_each)
    x = to_padded_array(big, 64)
    whole, tiled = enc.analysis(x, TilePolicy.never()), enc.analysis(x, SMALL)
    scale = np.abs(whole).max()
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(tiled, _torch_y(net, big, tiles=SMALL).numpy(), rtol=0, atol=1e-5 * scale)


# ---- the exact part: the same y gives the same bytes ------------------------------------------
@pytest.mark.parametrize("quality", [1000, 2350, 3000])
def test_the_same_latents_give_the_torch_encoders_bytes(numpy_each, photo, quality):
    net, enc = load_model(numpy_each), load_encoder(numpy_each)
    y = _torch_y(net, photo)
    with torch.inference_mode():
        ref = net.compress_latent(y, quality, "fp32", TilePolicy.never())
    # the integer part alone, from torch's own gained latents: identical by construction
    assert enc.code(*_torch_gained(net, y, quality), quality) == ref
    # from torch's y, with the numpy h_a (z might flip at a rounding boundary; here it does not)
    assert enc.compress_latent(y.numpy(), quality, TilePolicy.never()) == ref


def test_the_same_latents_give_the_same_bytes_with_a_quality_map(numpy_each, photo):
    net, enc = load_model(numpy_each), load_encoder(numpy_each)
    y = _torch_y(net, photo)
    qmap = np.random.default_rng(1).choice([1000, 1450, 2000, 3000], size=y.shape[-2:])
    with torch.inference_mode():
        ref = net.compress_latent(y, 2000, "fp32", TilePolicy.never(), qmap)
        uniform = net.compress_latent(y, 2000, "fp32", TilePolicy.never())
    assert ref != uniform
    assert enc.code(*_torch_gained(net, y, 2000, qmap), 2000) == ref
    assert enc.compress_latent(y.numpy(), 2000, TilePolicy.never(), qmap) == ref
    with pytest.raises(ValueError, match="quality map"):
        enc.compress_latent(y.numpy(), 2000, TilePolicy.never(), qmap[:-1])


def test_the_same_latents_give_the_same_bytes_tiled(numpy_each, photo):
    big = np.tile(photo, (3, 3, 1))
    net, enc = load_model(numpy_each), load_encoder(numpy_each)
    y = _torch_y(net, big, tiles=SMALL)
    with torch.inference_mode():
        ref = net.compress_latent(y, 2400, "fp32", SMALL)
    assert enc.compress_latent(y.numpy(), 2400, SMALL) == ref
    # and the tiled file is the whole one: integers do not see tiles, h_a differs by rounding
    assert enc.compress_latent(y.numpy(), 2400, TilePolicy.never()) == ref


# ---- the files -------------------------------------------------------------------------------
def test_liccodec_encode_dispatches_to_the_numpy_encoder(tiny_each):
    numpy = isinstance(codec._encoder(get_spec(tiny_each)), Encoder)
    assert numpy == (get_spec(tiny_each).arch in runtime.SUPPORTED)


def _rgba(photo: np.ndarray) -> Image.Image:
    alpha = np.linspace(0, 255, photo.shape[1], dtype=np.uint8)[None].repeat(photo.shape[0], 0)
    return Image.fromarray(np.dstack([photo, alpha]), "RGBA")


def _features(model_id: str, photo: np.ndarray) -> dict[str, bytes]:
    """A file of each kind liccodec.encode writes."""
    from liccodec.ratecontrol import Target, encode_to_target

    mask = np.zeros(photo.shape[:2], bool)
    mask[10:50, 20:70] = True
    grey = np.linspace(0, 255, photo.shape[1], dtype=np.uint8)[None].repeat(photo.shape[0], 0)
    img = Image.fromarray(photo)
    an = analyse(split(img), model_id)
    return {
        "uniform": liccodec.encode(img, model=model_id, quality=2),
        "fractional": liccodec.encode(img, model=model_id, quality=2.35),
        "roi": liccodec.encode(img, model=model_id, quality=3, roi=mask, roi_background=1.2),
        "quality map": liccodec.encode(img, model=model_id, quality_map=grey, quality_range=(1.0, 2.5)),
        "alpha and caption": liccodec.encode(_rgba(photo), model=model_id, quality=1.5, caption="a test"),
        "analysis at 2.6": encode_analysis(an, 2600).data,
        "target bpp": encode_to_target(split(img), Target("bpp", 1.0), model_id).data,
    }


def test_files_are_the_torch_encoders(numpy_each, photo, monkeypatch):
    """Every feature of ``liccodec.encode`` writes the file the torch encoder writes in fp32
    (the tiny models' y is far from rounding boundaries at float32 rounding)."""
    monkeypatch.setenv("LICCODEC_PRECISION", "fp32")
    ours = _features(numpy_each, photo)
    with monkeypatch.context() as m:
        m.setattr(codec, "_encoder", lambda spec: load_model(spec.id))
        ref = _features(numpy_each, photo)
    for kind, data in ours.items():
        assert data == ref[kind], kind
        header, rgb, alpha = decode_rgb(data)
        assert rgb.shape == photo.shape and (alpha is not None) == (kind == "alpha and caption")
    assert ours["analysis at 2.6"] == liccodec.encode(Image.fromarray(photo), model=numpy_each, quality=2.6)


def test_analysis_codes_like_encode_planes(numpy_each, photo):
    planes = split(Image.fromarray(photo))
    an = analyse(planes, numpy_each)
    assert isinstance(an.y, np.ndarray)
    for q in (1000, 1730, 3000):
        assert encode_analysis(an, q).data == encode_planes(planes, numpy_each, q / 1000).data


def test_tiled_encoding_decodes_like_whole_encoding(numpy_each, photo, monkeypatch):
    img = Image.fromarray(np.tile(photo, (3, 3, 1)))
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "-1")
    whole = liccodec.encode(img, model=numpy_each, quality=2.0)
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "0")
    monkeypatch.setenv("LICCODEC_TILE_SIZE", "64")
    tiled = liccodec.encode(img, model=numpy_each, quality=2.0)
    assert (_symbols(numpy_each, whole) != _symbols(numpy_each, tiled)).mean() < 1e-3


def test_encoding_does_not_import_torch(tiny_models_dir, photo, tmp_path):
    """``liccodec.encode`` and ``lic encode`` (one image, ROI, alpha, caption, a rate
    target) run without torch for msh and charm; the files decode."""
    Image.fromarray(photo).save(tmp_path / "a.png")
    _rgba(photo).save(tmp_path / "b.png")
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[10:50, 20:70] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    d = str(tmp_path)
    code = ("import sys, liccodec\n"
            "from liccodec.cli.main import main\n"
            "for m in ('msh.tiny', 'charm.tiny'):\n"
            f"    open({d!r} + '/x.lic', 'wb').write(liccodec.encode({d!r} + '/a.png', model=m, quality=2.5))\n"
            "    for args in (['b.png', 'b.lic', '--caption', 'a cat'], ['a.png', 'r.lic', '--roi', 'mask.png',\n"
            "                 '-q', '3', '--roi-background', '1'], ['a.png', 't.lic', '--target-bpp', '1']):\n"
            f"        args = [{d!r} + '/' + a if a.endswith('png') or a.endswith('lic') else a for a in args]\n"
            "        main(['encode', *args, '-m', m, '--overwrite', '--quiet'], standalone_mode=False)\n"
            "    for f in ('x', 'b', 'r', 't'):\n"
            f"        liccodec.decode({d!r} + '/' + f + '.lic')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "LICCODEC_MODELS": str(tiny_models_dir)})


# ---- the shipped weights -------------------------------------------------------------------
def compare_with_torch(model_id: str, rgb: np.ndarray, quality: float) -> dict[str, float]:
    """The numpy encoder's y and file against the torch encoder's (fp32, and bf16 where the
    CPU has it, as ``codec.precision()`` auto runs): y differences, the share of y symbols that
    differ, file sizes and decoded PSNR (docs/speed.md quotes these for Kodak)."""
    from liccodec.eval.metrics import psnr_rgb

    q = int(round(quality * 1000))
    net, enc = load_model(model_id), load_encoder(model_id)
    y = enc.analysis(to_padded_array(rgb, 64))
    out: dict[str, float] = {"y_scale": float(np.abs(y).max())}
    files = {"numpy": codec._finish(get_spec(model_id), split(Image.fromarray(rgb)), q,
                                    enc.compress_latent(y, q), None, None).data}
    for precision in ("fp32", "bf16"):
        yt = _torch_y(net, rgb, precision, TilePolicy.from_env())
        if precision == "fp32":
            out["y_max_abs_diff"] = float(np.abs(y - yt.numpy()).max())
            out["y_rms_diff"] = float(np.sqrt(np.mean((y - yt.numpy()) ** 2)))
            with torch.inference_mode():
                same_y = net.compress_latent(yt, q, "fp32")
            assert enc.compress_latent(yt.numpy(), q) == same_y  # same y: same bytes
        with torch.inference_mode():
            streams = net.compress_latent(yt, q, precision)
        files[precision] = codec._finish(get_spec(model_id), split(Image.fromarray(rgb)), q, streams, None, None).data
    sym = {k: _symbols(model_id, v) for k, v in files.items()}
    psnr = {k: psnr_rgb(rgb, decode_rgb(v)[1]) for k, v in files.items()}
    for ref in ("fp32", "bf16"):
        out[f"symbols_differ_{ref}"] = float((sym["numpy"] != sym[ref]).mean())
        out[f"bytes_{ref}"] = len(files[ref])
        out[f"psnr_{ref}"] = psnr[ref]
    out["bytes_numpy"], out["psnr_numpy"] = len(files["numpy"]), psnr["numpy"]
    return out


def _chelsea() -> np.ndarray:
    with resources.as_file(resources.files("liccodec") / "data" / "chelsea.png") as p:
        return np.asarray(Image.open(p).convert("RGB"))[:128, :192]


def test_the_shipped_default_encodes_like_the_torch_model():
    if not get_spec("charm.mse").available:
        pytest.skip("shipped weights not present")
    r = compare_with_torch("charm.mse", _chelsea(), 4.5)
    assert r["y_max_abs_diff"] < 1e-4 * r["y_scale"]
    assert r["symbols_differ_fp32"] < 1e-3 and abs(r["bytes_numpy"] - r["bytes_fp32"]) <= 8
    assert abs(r["psnr_numpy"] - r["psnr_fp32"]) < 0.01


@pytest.mark.slow
@pytest.mark.skipif(not KODAK.is_dir(), reason=f"{KODAK} not present")
@pytest.mark.parametrize("model_id", ["charm.mse", "msh.mse"])
def test_kodak_files_are_the_torch_encoders_within_rounding(model_id):
    """kodim01-06 at quality 5 against the torch encoder in fp32: y within 1e-5 of its range,
    at most one symbol in 10,000 different, sizes within 0.1 % and PSNR within 0.01 dB; in
    bf16 (what ``auto`` runs where the CPU has it; 0.3-2 % of the symbols differ): sizes within
    0.5 % and PSNR within 0.1 dB. ``-s`` prints the numbers (docs/speed.md)."""
    if not get_spec(model_id).available:
        pytest.skip("shipped weights not present")
    for name in [f"kodim{i:02d}.png" for i in range(1, 7)]:
        r = compare_with_torch(model_id, np.asarray(Image.open(KODAK / name).convert("RGB")), 5.0)
        print(model_id, name, {k: round(v, 7) for k, v in r.items()})
        assert r["y_max_abs_diff"] < 1e-5 * r["y_scale"] and r["symbols_differ_fp32"] < 1e-4
        for ref, size, psnr in (("fp32", 1e-3, 0.01), ("bf16", 5e-3, 0.1)):
            assert abs(r["bytes_numpy"] / r[f"bytes_{ref}"] - 1) < size
            assert abs(r["psnr_numpy"] - r[f"psnr_{ref}"]) < psnr
