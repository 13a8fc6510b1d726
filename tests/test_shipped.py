"""Every shipped weight set (models/manifest.json): verified load, exact round trip, sane quality.

Fast enough for the default run (a 128x128 crop of the bundled photo); the RD numbers on
Kodak are `lic eval`'s job (docs/results.md)."""
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import liccodec
from liccodec.codec import decode_rgb, list_models
from liccodec.imageio import pad_to_multiple, to_tensor
from liccodec.weights import DEFAULT_MODEL, load_model

SHIPPED = [s.id for s in list_models()]
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _photo() -> np.ndarray:
    with resources.as_file(resources.files("liccodec") / "data" / "chelsea.png") as p:
        return np.asarray(Image.open(p).convert("RGB"))[60:188, 150:278]


def test_the_default_model_is_shipped():
    assert DEFAULT_MODEL in SHIPPED


@pytest.mark.parametrize("model_id", SHIPPED)
def test_shipped_model_codes_exactly_and_well(model_id):
    spec = next(s for s in list_models() if s.id == model_id)
    img = _photo()
    psnrs = []
    for q in (spec.quality_min, spec.quality_max):
        data = liccodec.encode(Image.fromarray(img), model=model_id, quality=q)
        net = load_model(model_id)
        x = pad_to_multiple(to_tensor(img), 64)
        enc_streams, y_hat_enc = net.latent.compress(net.g_a(x), int(round(q * 1000)))
        y_hat_dec = net.latent.decompress(enc_streams, (x.shape[2] // 64, x.shape[3] // 64), int(round(q * 1000)))
        assert torch.equal(y_hat_enc, y_hat_dec)
        _, rgb, _ = decode_rgb(data)
        mse = np.mean((rgb.astype(float) - img.astype(float)) ** 2)
        psnrs.append(10 * np.log10(255.0**2 / mse))
        assert 0.02 < 8 * len(data) / img[..., 0].size < 4.0
    assert 24 < psnrs[0] < psnrs[1] - 3, psnrs  # trained weights: the top quality is clearly better


@pytest.mark.slow
@pytest.mark.parametrize("model_id", SHIPPED)
def test_shipped_model_decodes_the_same_tiled_or_whole(model_id):
    """The whole bundled photo (451x300) through the full-size model, decoded whole and in
    64-pixel tiles: the same latent integers, pixels within one code value."""
    from liccodec.container import unpack
    from liccodec.tiling import TilePolicy

    with resources.as_file(resources.files("liccodec") / "data" / "chelsea.png") as p:
        img = Image.open(p).convert("RGB")
    data = liccodec.encode(img, model=model_id, quality=4.5)
    header, streams = unpack(data)
    net = load_model(model_id)
    ds = net.downsampling
    hw = (-(-header.height // ds) * ds, -(-header.width // ds) * ds)
    z_hw = (hw[0] // ds, hw[1] // ds)
    small = TilePolicy(threshold=0, tile=64)
    whole = net.latent.decode_latents(streams, z_hw, header.quality)
    tiled = net.latent.decode_latents(streams, z_hw, header.quality, small.core(net.y_stride))
    assert all(torch.equal(a, b) for a, b in zip(whole, tiled))
    x_whole = net.decompress(streams, hw, header.quality, "fp32", TilePolicy.never())
    x_tiled = net.decompress(streams, hw, header.quality, "fp32", small)
    assert (x_whole - x_tiled).abs().max() <= 1 / 255


@pytest.mark.skipif(not KODAK.is_dir(), reason=f"{KODAK} not present (no ../shared in this checkout)")
@pytest.mark.parametrize("model_id", SHIPPED)
def test_shipped_model_round_trips_a_kodak_photo(model_id):
    """A whole Kodak photo (768x512) at the model's default quality, through the files that
    `lic encode` writes and `lic decode` reads: above 26 dB PSNR (issues 21 and 22)."""
    spec = next(s for s in list_models() if s.id == model_id)
    img = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))
    data = liccodec.encode(Image.fromarray(img), model=model_id, quality=spec.quality_default)
    rgb = np.asarray(liccodec.decode(data).convert("RGB"))
    mse = np.mean((rgb.astype(float) - img.astype(float)) ** 2)
    assert 10 * np.log10(255.0**2 / mse) > 26
