"""Tiled transforms equal whole-image ones: exactly for integers, to rounding for floats."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import liccodec
from liccodec.codec import decode_rgb
from liccodec.container import unpack
from liccodec.tiling import DEFAULT_THRESHOLD, Geometry, TilePolicy, run_tiled, spans
from liccodec.weights import load_model

SMALL = TilePolicy(threshold=0, tile=64)  # tiles even the test images, 64 px = one z position


def _chains(model):
    """(name, float chain, an input of the right shape) for each transform of the codec."""
    g = torch.Generator().manual_seed(5)
    n, m = model.latent.N, model.latent.M
    return [
        ("g_a", model.g_a, torch.rand(1, 3, 128, 160, generator=g, dtype=torch.float64)),
        ("h_a", model.latent.h_a, torch.randn(1, m, 24, 36, generator=g, dtype=torch.float64)),
        ("h_s", model.latent.h_s, torch.randn(1, n, 5, 7, generator=g, dtype=torch.float64)),
        ("g_s", model.g_s, 3 * torch.randn(1, m, 10, 14, generator=g, dtype=torch.float64)),
    ]


def test_geometry_of_the_codec(tiny_float):
    m = tiny_float
    assert Geometry.of(m.g_a) == Geometry(1, 16, 32)        # 4 convs 5x5/2: 30 px, on the 16 grid
    assert Geometry.of(m.g_s) == Geometry(16, 1, 2)
    assert Geometry.of(m.latent.h_a) == Geometry(1, 4, 8)
    assert Geometry.of(m.latent.h_s) == Geometry(4, 1, 2)
    with pytest.raises(ValueError, match="axis_ops"):
        Geometry.of(torch.nn.MaxPool2d(2))


class _Declared(torch.nn.Module):
    """A layer tiling does not know, declaring its receptive field: a 2x2 stride-2 pooling."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 2)

    def axis_ops(self):
        return [(False, 2, 2, 0)]


def test_layers_declare_their_geometry():
    """Any layer with axis_ops() tiles, exactly like the convolution it declares."""
    from liccodec.nn import conv

    pool = torch.nn.Sequential(conv(3, 4, 3, 1), _Declared(), torch.nn.GELU())
    same = torch.nn.Sequential(conv(3, 4, 3, 1), torch.nn.Conv2d(4, 4, 2, 2))
    assert Geometry.of(pool) == Geometry.of(same) == Geometry(1, 2, 2)
    x = torch.rand(1, 3, 12, 16, dtype=torch.float64)
    pool = pool.double()
    with torch.no_grad():
        assert (run_tiled(pool, x, Geometry.of(pool), 2) - pool(x)).abs().max() < 1e-12


class _Periodic(torch.nn.Module):
    """A stride-1 layer periodic with period 4: each aligned 4x4 cell is replaced by its mean
    (a pooling spread back over its cells); it reads at most 3 inputs away."""

    def forward(self, x):
        h, w = x.shape[-2:]
        cells = torch.nn.functional.avg_pool2d(x, 4, ceil_mode=True)
        return cells.repeat_interleave(4, -2).repeat_interleave(4, -1)[..., :h, :w]

    def axis_ops(self):
        return [(False, 7, 1, 3, 4)]


def test_a_periodic_layer_moves_the_tile_grid():
    """A layer declaring a period (a fifth axis_ops entry) is only tiled on it: behind a
    stride-2 convolution the chain's tiles start at multiples of 8, in an upsampling chain
    behind a stride-2 deconvolution at multiples of 2; tiled equals whole there, and on the
    stride grid alone it does not."""
    from liccodec.nn import conv, deconv
    from liccodec.tiling import axis_ops

    torch.manual_seed(0)
    down = torch.nn.Sequential(conv(3, 4, 3, 2), _Periodic(), conv(4, 4, 3, 2)).double()
    up = torch.nn.Sequential(deconv(4, 4, 3, 2), _Periodic(), deconv(4, 3, 3, 2)).double()
    g_down, g_up = Geometry.of(down), Geometry.of(up)
    assert (g_down.down, g_down.align, g_down.grid, g_down.halo % 8) == (4, 8, 8, 0)
    assert (g_up.up, g_up.align, g_up.grid) == (4, 2, 2)
    assert Geometry.of(torch.nn.Sequential(conv(3, 4, 3, 2))).align == 1
    assert axis_ops(down)[1] == (False, 7, 1, 3, 4)  # what a composite layer passes on
    x = torch.rand(1, 3, 96, 40, dtype=torch.float64)
    with torch.no_grad():
        y = down(x)
        for core in (4, 8, 12):
            assert (run_tiled(down, x, g_down, core) - y).abs().max() < 1e-12, core
        z = torch.rand(1, 4, 24, 10, dtype=torch.float64)
        assert (run_tiled(up, z, g_up, 1) - up(z)).abs().max() < 1e-12
        plain = Geometry(g_down.up, g_down.down, g_down.halo + 4)
        assert (run_tiled(down, x, plain, 4) - y).abs().max() > 1e-3


def test_halo_covers_the_measured_receptive_field(tiny_float):
    """Change one input position and check every output that moves is within the halo."""
    model = tiny_float.double()
    for name, f, x in _chains(model):
        geo = Geometry.of(f)
        p = (x.shape[2] // 2, x.shape[3] // 2)
        bumped = x.clone()
        bumped[:, :, p[0], p[1]] += 10.0
        with torch.no_grad():
            moved = (f(bumped) - f(x)).abs().amax(dim=(0, 1)) > 0
        rows, cols = np.nonzero(moved.numpy())
        assert len(rows), name
        for axis, outs in ((0, rows), (1, cols)):
            # the input core that each moved output belongs to
            lo = outs * geo.down // geo.up
            hi = (outs + 1) * geo.down // geo.up if geo.up == 1 else lo + 1
            assert np.all(lo - geo.halo <= p[axis]) and np.all(p[axis] < hi + geo.halo), name


def test_float_chains_match_whole_image_and_need_their_halo(tiny_float):
    model = tiny_float.double()
    for name, f, x in _chains(model):
        geo = Geometry.of(f)
        with torch.no_grad():
            whole = f(x)
            for core in (geo.down, 3 * geo.down):
                tiled = run_tiled(f, x, geo, core)
                assert tiled.shape == whole.shape
                assert (tiled - whole).abs().max() < 1e-12, (name, core)
            short = Geometry(geo.up, geo.down, geo.halo - geo.down)
            assert (run_tiled(f, x, short, geo.down) - whole).abs().max() > 1e-6, name


def test_integer_hyper_synthesis_is_bit_exact_tiled(tiny):
    ex = load_model(tiny).latent.exact
    z = torch.randint(-12, 13, (1, 8, 7, 9), generator=torch.Generator().manual_seed(2))
    index, means = ex.hyper_params(z, 2300)
    for tile in (1, 2, 3, 5, 100):
        t_index, t_means = ex.hyper_params(z, 2300, tile)
        assert torch.equal(t_index, index) and torch.equal(t_means, means), tile


def _image(h=200, w=300, seed=4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 0.8, yy * 1.1, (xx + yy) * 0.4], axis=2) + 60 * np.sin(xx / 9.0)[..., None]
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def _decode_latents(model_id, data, policy):
    header, streams = unpack(data)
    net = load_model(model_id)
    z_hw = (-(-header.height // 64), -(-header.width // 64))
    tile = policy.core(16) if policy.applies(z_hw[0] * 64, z_hw[1] * 64) else None
    return net.latent.decode_latents(streams, z_hw, header.quality, tile)


@pytest.mark.parametrize("encode_tiled", [False, True])
def test_a_file_decodes_to_the_same_latents_tiled_or_not(tiny_each, monkeypatch, encode_tiled):
    monkeypatch.setenv("LICCODEC_PRECISION", "fp32")
    if encode_tiled:
        monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "0")
        monkeypatch.setenv("LICCODEC_TILE_SIZE", "64")
    img = _image()
    data = liccodec.encode(Image.fromarray(img), model=tiny_each, quality=2.4)
    whole = _decode_latents(tiny_each, data, TilePolicy.never())
    tiled = _decode_latents(tiny_each, data, SMALL)
    assert torch.equal(whole[0], tiled[0]) and torch.equal(whole[1], tiled[1])

    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "-1")
    _, rgb_whole, _ = decode_rgb(data)
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "0")
    monkeypatch.setenv("LICCODEC_TILE_SIZE", "64")
    _, rgb_tiled, _ = decode_rgb(data)
    assert np.abs(rgb_whole.astype(int) - rgb_tiled.astype(int)).max() <= 1


def test_tiled_encoder_codes_nearly_the_same_symbols(tiny_each, monkeypatch):
    """Float g_a/h_a differ by rounding only, so at most a rare symbol sits on the other side
    of a rounding boundary; the file stays valid either way (the test above)."""
    monkeypatch.setenv("LICCODEC_PRECISION", "fp32")
    img = Image.fromarray(_image(seed=7))
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "-1")
    whole = _decode_latents(tiny_each, liccodec.encode(img, model=tiny_each, quality=2.0), TilePolicy.never())[0]
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "0")
    monkeypatch.setenv("LICCODEC_TILE_SIZE", "64")
    tiled = _decode_latents(tiny_each, liccodec.encode(img, model=tiny_each, quality=2.0), TilePolicy.never())[0]
    assert (whole != tiled).float().mean() < 1e-3


def test_policy_defaults_env_and_spans(monkeypatch):
    for name in ("LICCODEC_TILE_THRESHOLD", "LICCODEC_TILE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    p = TilePolicy.from_env()
    assert p.threshold == DEFAULT_THRESHOLD and not p.applies(512, 768) and p.applies(4032, 6016)
    monkeypatch.setenv("LICCODEC_TILE_THRESHOLD", "0")
    monkeypatch.setenv("LICCODEC_TILE_SIZE", "128")
    assert TilePolicy.from_env() == TilePolicy(0, 128) and TilePolicy(0, 128).core(16) == 8
    assert not TilePolicy.never().applies(65536, 4096)
    with pytest.raises(ValueError):
        TilePolicy(0, 100)
    monkeypatch.setenv("LICCODEC_TILE_SIZE", "big")
    with pytest.raises(ValueError):
        TilePolicy.from_env()
    s = spans(10, 4, 2)
    assert [(t.start, t.stop, t.lo, t.hi) for t in s] == [(0, 4, 0, 6), (4, 8, 2, 10), (8, 10, 6, 10)]
