"""The numpy decoder (``liccodec.runtime``) against the torch models it stands in for: the
same latents bit for bit, the same pixels up to float rounding, tiled or whole, and no
torch import on the way."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import liccodec
from liccodec import runtime
from liccodec.container import unpack
from liccodec.entropy import reader_of
from liccodec.errors import ModelError
from liccodec.fixedpoint import ACT_CLIP, W_LIMIT
from liccodec.imageio import to_uint8
from liccodec.runtime.ops import _phase, _phase_layout, conv2d, conv_transpose2d, gdn
from liccodec.tiling import TilePolicy
from liccodec.weights import get_spec, load_model


# ---- the operations ---------------------------------------------------------------------
@pytest.mark.parametrize("block", [1 << 21, 64])  # one block of rows, or a block a row (each padded alone)
@pytest.mark.parametrize("k,stride,pad", [(1, 1, 0), (3, 1, 1), (5, 2, 2), (3, 2, 1), (4, 2, 1)])
def test_conv2d_is_torchs(k, stride, pad, block, monkeypatch):
    monkeypatch.setattr("liccodec.runtime.ops.BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.normal(size=(1, 6, 13, 10))
    w = rng.normal(size=(7, 6, k, k))
    b = rng.normal(size=7)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, pad)[0].numpy()
    out = conv2d(x[0].transpose(1, 2, 0), w.transpose(2, 3, 1, 0).copy(), b, stride, pad)
    np.testing.assert_allclose(out.transpose(2, 0, 1), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block", [1 << 21, 64])  # one block of rows, or a block a row
# float32: the scatter path (few outputs) and the phase convolution; float64: the scatter path,
# channel-first (few outputs) and channel-last
@pytest.mark.parametrize("co", [3, 24])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,stride,pad,out_pad", [(5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (3, 1, 1, 0),
                                                  (5, 3, 2, 2), (2, 2, 0, 0)])
def test_conv_transpose2d_is_torchs(k, stride, pad, out_pad, dtype, co, block, monkeypatch):
    monkeypatch.setattr("liccodec.runtime.ops.BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.normal(size=(1, 5, 7, 9))
    w = rng.normal(size=(5, co, k, k))
    b = rng.normal(size=co)
    ref = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, pad,
                             out_pad)[0].numpy()
    out = conv_transpose2d(x[0].transpose(1, 2, 0).astype(dtype), w.astype(dtype), b.astype(dtype), stride, pad,
                           out_pad)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out.transpose(2, 0, 1), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("k,stride,pad,macs", [(5, 2, 2, 25), (3, 2, 1, 9), (4, 2, 1, 24), (5, 3, 2, 30)])
def test_transposed_phases_multiply_only_their_taps_where_they_nest(k, stride, pad, macs):
    """Each phase multiplies one contiguous part of the shared im2col matrix: with stride 2 and
    nested taps that part holds its taps alone (k * k multiply-adds in all); otherwise (k = 4:
    shifted windows, {0, 1} and {1, 2}; stride 3) the phase reads whole window rows."""
    phases = [_phase(r, stride, k, pad) for r in range(stride)]
    lo = min(first for _, first in phases)
    kc, order, layout = _phase_layout(phases, lo)
    assert sorted(order) == [(r, c) for r in range(kc) for c in range(kc)]
    assert sum(b - a for a, b, _ in layout.values()) == macs
    for (ry, rx), (a, b, taps) in layout.items():  # every tap of the phase is in its part
        got = {t for t in taps if None not in t}
        assert got == {(ty, tx) for ty in phases[ry][0] for tx in phases[rx][0]}


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_in_place_by_blocks(inverse, monkeypatch):
    monkeypatch.setattr("liccodec.runtime.ops.BLOCK_ELEMENTS", 64)  # several blocks of rows
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 5, 4)).astype(np.float32)
    beta, gamma = rng.uniform(0.5, 1, 4).astype(np.float32), rng.uniform(0, 0.1, (4, 4)).astype(np.float32)
    norm = np.sqrt(beta + np.einsum("hwj,ij->hwi", x.astype(np.float64) ** 2, gamma))
    ref = x * norm if inverse else x / norm
    out = gdn(x, beta, gamma, inverse)
    assert out is x
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_integer_sums_are_exact_in_float64():
    """Integers whose partial sums pass 2**24 (float32 would round) come out exact."""
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 20), 1 << 20, size=(9, 9, 32)).astype(np.float64)
    w = rng.integers(-(1 << 14), 1 << 14, size=(3, 3, 32, 4)).astype(np.float64)
    out = conv2d(x, w, None, 1, 1).astype(np.int64)
    xi, wi = x.astype(np.int64), w.astype(np.int64)
    xp = np.pad(xi, ((1, 1), (1, 1), (0, 0)))
    ref = sum(np.einsum("hwc,co->hwo", xp[i:i + 9, j:j + 9], wi[i, j]) for i in range(3) for j in range(3))
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("relu", [False, True])
def test_integer_layer_is_the_integer_rounding_shift(relu):
    """The float64 requantization gives (acc + bias + 2**(shift-1)) >> shift, clipped, on
    negative sums and on ties too (shift 2: a quarter of the sums sit on one)."""
    rng = np.random.default_rng(2)
    x = rng.integers(-(1 << 12), 1 << 12, size=(6, 7, 5))
    w = rng.integers(-(1 << 10), 1 << 10, size=(4, 5, 3, 3))   # torch layout (Co, Ci, k, k)
    b = rng.integers(-(1 << 14), 1 << 14, size=4)
    layer = runtime.IntegerLayer.build(False, w, b, 2, 1, 1, 0, relu)
    out = layer(x.astype(np.float64))
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    acc = sum(np.einsum("hwc,oc->hwo", xp[i:i + 6, j:j + 7], w[:, :, i, j]) for i in range(3) for j in range(3))
    ref = np.clip((acc + b + 2) >> 2, 0 if relu else -ACT_CLIP, ACT_CLIP)
    assert out.dtype == np.float64 and np.array_equal(out.astype(np.int64), ref)


def test_integer_layer_refuses_sums_float64_cannot_hold():
    w = np.full((1, 1 << 17, 1, 1), W_LIMIT)  # 2**17 taps of 2**15 times activations of 2**22
    with pytest.raises(ModelError):
        runtime.IntegerLayer.build(False, w, np.zeros(1, np.int64), 10, 1, 0, 0, False)


# ---- the decoder against the torch models --------------------------------------------------
def _coded(model_id: str, photo: np.ndarray, quality: float):
    data = liccodec.encode(Image.fromarray(photo), model=model_id, quality=quality)
    header, streams = unpack(data)
    hp, wp = -(-header.height // 64) * 64, -(-header.width // 64) * 64
    return header, streams, (hp, wp)


def _numpy_latents(dec, streams, hw, q):
    reader = reader_of(streams)
    out = dec.decode_latents(reader, (hw[0] // 64, hw[1] // 64), q, None)
    reader.finish()
    return out


@pytest.mark.parametrize("quality", [1.0, 2.35, 3.0])
def test_latents_and_pixels_are_the_torch_models(tiny_each, photo, quality):
    if get_spec(tiny_each).arch not in runtime.SUPPORTED:
        pytest.skip("the numpy decoder does not run this architecture")
    header, streams, hw = _coded(tiny_each, photo, quality)
    net, dec = load_model(tiny_each), runtime.load_decoder(tiny_each)
    y_sym, means_q = net.latent.decode_latents(streams, (hw[0] // 64, hw[1] // 64), header.quality)
    y_sym_np, means_np = _numpy_latents(dec, streams, hw, header.quality)
    assert np.array_equal(y_sym.numpy(), y_sym_np) and np.array_equal(means_q.numpy(), means_np)
    with torch.inference_mode():
        ref = to_uint8(net.decompress(streams, hw, header.quality, "fp32"))
    out = dec.decode(streams, hw, header.quality)
    assert out.shape == ref.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_tiled_decoding_is_whole_decoding(tiny_each, photo):
    if get_spec(tiny_each).arch not in runtime.SUPPORTED:
        pytest.skip("the numpy decoder does not run this architecture")
    big = np.tile(photo, (3, 3, 1))  # 210 x 297: several 64-pixel tiles
    header, streams, hw = _coded(tiny_each, big, 2.0)
    dec = runtime.load_decoder(tiny_each)
    whole = dec.decode(streams, hw, header.quality, TilePolicy.never())
    tiled = dec.decode(streams, hw, header.quality, TilePolicy(threshold=0, tile=64))
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_the_shipped_default_decodes_like_the_torch_model():
    spec = get_spec("charm.mse")
    if not spec.available:
        pytest.skip("shipped weights not present")
    sample = np.asarray(Image.open(os.path.join(os.path.dirname(liccodec.__file__), "data", "chelsea.png"))
                        .convert("RGB"))[:128, :192]
    header, streams, hw = _coded("charm.mse", sample, 4.5)
    net, dec = load_model("charm.mse"), runtime.load_decoder("charm.mse")
    y_sym, means_q = net.latent.decode_latents(streams, (hw[0] // 64, hw[1] // 64), header.quality)
    y_sym_np, means_np = _numpy_latents(dec, streams, hw, header.quality)
    assert np.array_equal(y_sym.numpy(), y_sym_np) and np.array_equal(means_q.numpy(), means_np)
    with torch.inference_mode():
        ref = to_uint8(net.decompress(streams, hw, header.quality, "fp32"))
    diff = np.abs(dec.decode(streams, hw, header.quality).astype(int) - ref.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_decoding_does_not_import_torch(tiny, photo, tmp_path):
    path = tmp_path / "x.lic"
    path.write_bytes(liccodec.encode(Image.fromarray(photo), model=tiny, quality=2))
    code = ("import sys, liccodec\n"
            f"img = liccodec.decode({str(path)!r})\n"
            "assert img.size == (99, 70), img.size\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
