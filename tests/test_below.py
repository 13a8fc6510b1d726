"""Qualities below a model's lowest level (fixedpoint.BELOW): gains extrapolated from its two
lowest levels, y's geometrically and the hyper-gains linearly (integers in the decoder)."""
import numpy as np
import pytest
import torch
from PIL import Image

import liccodec
from liccodec.codec import decode_rgb, quality_bottom
from liccodec.container import read_header
from liccodec.errors import UsageError
from liccodec.fixedpoint import BELOW, level_split
from liccodec.nn.layers import GainUnits
from liccodec.runtime import gain_at
from liccodec.weights import get_spec, load_model


def test_level_split_extrapolates_below_level_0():
    assert level_split(1000, 8) == (0, 0)
    assert level_split(400, 8) == (0, -600)
    assert level_split(1000 - 1000 * BELOW, 8) == (0, -1000 * BELOW)
    assert level_split(500, 1) == (0, 0)  # one level: nothing to extrapolate from
    with pytest.raises(ValueError):
        level_split(1000 - 1000 * BELOW - 1, 8)


def test_gains_extrapolate_geometrically_and_hyper_gains_linearly():
    torch.manual_seed(0)
    gu, hyper = GainUnits(4, 6), GainUnits(4, 6, below="linear")
    with torch.no_grad():
        for g in (gu, hyper):
            g.log_gain.normal_(0, 0.3)
            g.log_gain[1] = g.log_gain[0] + 0.4
    table, htable = gu.log_gain.detach().exp(), hyper.log_gain.detach().exp()
    level = torch.tensor([-1.0, -0.5, 0.0, 2.5])
    with torch.no_grad():
        g, _ = gu(level)
        h, _ = hyper(level)
    np.testing.assert_allclose(g[0, :, 0, 0], table[0] ** 2 / table[1], rtol=1e-5)
    np.testing.assert_allclose(g[1, :, 0, 0], table[0] * (table[1] / table[0]) ** -0.5, rtol=1e-5)
    np.testing.assert_allclose(h[0, :, 0, 0], 2 * htable[0] - htable[1], rtol=1e-5)
    np.testing.assert_allclose(g[3, :, 0, 0], (table[2] + table[3]) / 2, rtol=1e-6)  # inside: unchanged
    np.testing.assert_allclose(gain_at(table.numpy(), 0), table[0] ** 2 / table[1], rtol=1e-5)
    np.testing.assert_allclose(gain_at(htable.numpy(), 500, below="linear"),
                               1.5 * htable[0] - 0.5 * htable[1], rtol=1e-5)


def test_qualities_below_the_lowest_level_code_smaller_files(tiny_each, photo):
    spec = get_spec(tiny_each)
    img = Image.fromarray(photo)
    assert quality_bottom(spec) == spec.quality_min - BELOW
    sizes = []
    for q in (quality_bottom(spec), spec.quality_min - 0.5, spec.quality_min):
        data = liccodec.encode(img, model=tiny_each, quality=q)
        h = read_header(data)
        assert (h.major, h.quality) == (2, round(q * 1000))
        assert decode_rgb(data)[1].shape == photo.shape
        sizes.append(len(data))
    assert sizes[0] <= sizes[1] <= sizes[2]


def test_torch_and_numpy_paths_agree_below_the_lowest_level(tiny, photo):
    from liccodec.imageio import pad_to_multiple, to_tensor

    net = load_model(tiny)
    x = pad_to_multiple(to_tensor(photo), 64)
    for q in (0, 400):
        streams, y_hat = net.latent.compress(net.g_a(x), q)
        assert torch.equal(net.latent.decompress(streams, (x.shape[2] // 64, x.shape[3] // 64), q), y_hat)


def test_below_the_bottom_and_a_varying_quality_are_refused(tiny, photo):
    spec = get_spec(tiny)
    img = Image.fromarray(photo)
    with pytest.raises(UsageError):
        liccodec.encode(img, model=tiny, quality=quality_bottom(spec) - 0.01)
    mask = np.zeros(photo.shape[:2], bool)
    mask[:20] = True
    with pytest.raises(UsageError, match="whole image"):
        liccodec.encode(img, model=tiny, quality=3, roi=mask, roi_background=spec.quality_min - 0.5)
