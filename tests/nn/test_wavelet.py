"""Lifting wavelets: exact inverses, JPEG 2000 boundary handling checked against the
standard's own formulation, textbook values, orthonormal Haar, tiling and autograd."""
import math

import pytest
import torch

from liccodec.nn.wavelet import (ALPHA, BANDS_2D, BANDS_3D, BETA, DELTA, DWT2d, DWT3d, GAMMA, IDWT2d, IDWT3d,
                                 K97, WAVELETS, Pyramid, dwt, dwt2, dwt3, get_wavelet, idwt, idwt2, idwt3,
                                 wavedec2, wavedec3, waverec)
from liccodec.tiling import Geometry, run_tiled

FLOAT = ["haar", "legall53", "cdf97"]
ALL = [*FLOAT, "legall53-int"]
# (channels, height, width), valid for that many levels of both 2D and 3D transforms
SHAPES = {1: (2, 6, 10), 2: (4, 12, 20), 3: (8, 32, 48)}


def sample(wavelet, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    if WAVELETS[wavelet].integer:
        return torch.randint(-(1 << 20), 1 << 20, shape, generator=g)
    return torch.randn(shape, generator=g) * 50


def assert_reconstructs(x, back):
    assert back.dtype == x.dtype and back.shape == x.shape
    if x.dtype == torch.int64:
        assert torch.equal(back, x)
    else:
        assert (back - x).abs().max() < 1e-5 * x.abs().max()


def reference_1d(x, wavelet):
    """JPEG 2000's formulation (ITU-T T.800 annex F): extend the signal by whole-sample
    symmetry first, lift over the extended signal, keep the inside; then our scaling."""
    w = WAVELETS[wavelet]
    n, pad = len(x), 8
    period = 2 * n - 2

    def mirror(i):
        i = abs(i) % period if period else 0
        return period - i if i > n - 1 else i

    y = {i: x[mirror(i)] for i in range(-pad, n + pad)}
    for st in w.steps:
        for i in range(-pad + 1, n + pad - 1):
            if i % 2 == (1 if st.predict else 0):
                total = y[i - 1] + y[i + 1]
                y[i] += st.coef * ((total + st.offset) >> st.shift) if w.integer else st.coef * total
    return [y[i] * w.gain for i in range(0, n, 2)], [y[i] / w.gain for i in range(1, n, 2)]


@pytest.mark.parametrize("wavelet", ALL)
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_perfect_reconstruction_2d(wavelet, levels):
    c, h, w = SHAPES[levels]
    x = sample(wavelet, (2, c, h, w))
    p = wavedec2(x, wavelet, levels)
    assert p.low.shape == (2, c, h >> levels, w >> levels)
    assert [t.shape for t in p.highs] == [(2, 3 * c, h >> k, w >> k) for k in range(1, levels + 1)]
    assert_reconstructs(x, waverec(p))


@pytest.mark.parametrize("wavelet", ALL)
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_perfect_reconstruction_3d(wavelet, levels):
    c, h, w = SHAPES[levels]
    x = sample(wavelet, (2, c, h, w), seed=1)
    p = wavedec3(x, wavelet, levels)
    assert p.low.shape == (2, c >> levels, h >> levels, w >> levels)
    assert [t.shape for t in p.highs] == [(2, 7 * c >> k, h >> k, w >> k) for k in range(1, levels + 1)]
    assert_reconstructs(x, waverec(p))


@pytest.mark.parametrize("wavelet", ALL)
def test_one_level_layers_and_pyramid_agree(wavelet):
    x = sample(wavelet, (1, 4, 2, 6), seed=2)  # 2 rows: the shortest valid length
    for fwd, inv, layer, inverse_layer, dec in ((dwt2, idwt2, DWT2d, IDWT2d, wavedec2),
                                                 (dwt3, idwt3, DWT3d, IDWT3d, wavedec3)):
        y = fwd(x, wavelet)
        assert y.shape == (1, 16, 1, 3)
        assert torch.equal(layer(wavelet)(x), y)
        p = dec(x, wavelet, 1)
        assert torch.equal(torch.cat([p.low, p.highs[0]], dim=1), y)
        assert_reconstructs(x, inv(y, wavelet))
        assert_reconstructs(x, inverse_layer(wavelet)(y))


@pytest.mark.parametrize("wavelet", ALL)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_perfect_reconstruction_1d(wavelet, dim):
    x = sample(wavelet, (6, 10, 2), seed=3)
    lo, hi = dwt(x, wavelet, dim)
    assert lo.shape[dim] == hi.shape[dim] == x.shape[dim] // 2
    assert_reconstructs(x, idwt(lo, hi, wavelet, dim))


@pytest.mark.parametrize("wavelet", ["legall53", "cdf97", "legall53-int"])
@pytest.mark.parametrize("n", [2, 4, 6, 10, 16])
def test_matches_jpeg2000_formulation(wavelet, n):
    x = sample(wavelet, (n,), seed=n)
    x = x.double() if not WAVELETS[wavelet].integer else x
    lo, hi = dwt(x, wavelet)
    ref_lo, ref_hi = reference_1d(x.tolist(), wavelet)
    if WAVELETS[wavelet].integer:
        assert lo.tolist() == ref_lo and hi.tolist() == ref_hi
    else:
        assert torch.allclose(lo, torch.tensor(ref_lo, dtype=torch.float64), rtol=0, atol=1e-12 * x.abs().max())
        assert torch.allclose(hi, torch.tensor(ref_hi, dtype=torch.float64), rtol=0, atol=1e-12 * x.abs().max())


def test_reversible_53_known_values():
    # d0 = 5 - floor(3/2) = 4, d1 = 8 - floor(5/2) = 6, d2 = 3 - floor((3+3)/2) = 0 (x[6] = x[4]);
    # s0 = 1 + floor((4+4+2)/4) = 3 (d[-1] = d[0]), s1 = 2 + floor(12/4) = 5, s2 = 3 + floor(8/4) = 5
    lo, hi = dwt(torch.tensor([1, 5, 2, 8, 3, 3]), "legall53-int")
    assert lo.tolist() == [3, 5, 5] and hi.tolist() == [4, 6, 0]
    # floor, not truncation, of negative sums: 0 - floor(-1/2) = 1; 1 + floor(-2/4) = 0
    assert dwt(torch.tensor([-1, 0, 0, 0]), "legall53-int")[1].tolist() == [1, 0]
    assert dwt(torch.tensor([1, -2, 0, 0]), "legall53-int")[0].tolist() == [0, 0]


def test_cdf97_coefficients_give_the_documented_gains():
    # DC: the lifted low band of a constant, times K, is sqrt(2); Nyquist likewise for the high band
    s = 1 + 2 * BETA * (1 + 2 * ALPHA)
    assert math.isclose(s * K97, math.sqrt(2), rel_tol=1e-8)
    d = (-1 + 2 * ALPHA) + 2 * GAMMA * (1 + 2 * BETA * (-1 + 2 * ALPHA))
    assert math.isclose(-d / K97, math.sqrt(2), rel_tol=1e-8)
    assert abs(1 + 2 * DELTA * d / (1 + 2 * BETA * (-1 + 2 * ALPHA))) < 1e-8  # low band kills Nyquist


@pytest.mark.parametrize("wavelet", ALL)
def test_constant_image(wavelet):
    c = 7
    x = torch.full((1, 2, 6, 10), c, dtype=torch.int64 if WAVELETS[wavelet].integer else torch.float32)
    y2, y3 = dwt2(x, wavelet), dwt3(x, wavelet)
    dc2, dc3 = (c, c) if WAVELETS[wavelet].integer else (2 * c, 2 * math.sqrt(2) * c)
    if x.dtype == torch.int64:
        assert torch.equal(y2[:, :2], torch.full_like(y2[:, :2], dc2)) and not y2[:, 2:].any()
        assert torch.equal(y3[:, :1], torch.full_like(y3[:, :1], dc3)) and not y3[:, 1:].any()
    else:
        assert (y2[:, :2] - dc2).abs().max() < 1e-6 * c and y2[:, 2:].abs().max() < 1e-6 * c
        assert (y3[:, :1] - dc3).abs().max() < 1e-6 * c and y3[:, 1:].abs().max() < 1e-6 * c


@pytest.mark.parametrize(("wavelet", "moments"), [("haar", 1), ("legall53", 2), ("cdf97", 4)])
def test_vanishing_moments(wavelet, moments):
    # polynomials below the wavelet's number of vanishing moments leave no high band away
    # from the borders (the mirror at the right end bends a ramp); the next degree does
    t = torch.arange(24, dtype=torch.float64) / 24
    for degree in range(moments + 1):
        _, hi = dwt((t - 0.5) ** degree, wavelet)
        inner = hi[2:-3].abs().max()
        assert inner < 1e-8 if degree < moments else inner > 1e-6, (degree, inner)


@pytest.mark.parametrize("wavelet", ["legall53", "cdf97"])
def test_planes_leave_only_ll_inside(wavelet):
    i, j = torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij")
    y = dwt2((3 * i - 2 * j + 5)[None, None], wavelet)
    assert y[0, 1:, 2:-3, 2:-3].abs().max() < 1e-5 * 100
    assert y[0, 0].abs().max() > 10


def test_band_order():
    # columns alternating in sign vary along the width only: all energy lands in HL
    # (high along width, low along height); the same along channels lands in LLH
    w = torch.tensor([1.0, -1.0]).repeat(5)
    x = w.expand(1, 1, 6, 10)
    y = dwt2(x, "haar")
    assert [k for k in range(4) if y[0, k].abs().max() > 1e-6] == [BANDS_2D.index("HL")]
    c = torch.tensor([1.0, -1.0]).repeat(2)[None, :, None, None].expand(1, 4, 6, 10)
    y = dwt3(c, "haar")
    bands = y.reshape(1, 8, 2, 3, 5)
    assert [k for k in range(8) if bands[0, k].abs().max() > 1e-6] == [BANDS_3D.index("LLH")]


def test_haar_is_orthonormal():
    lo, hi = dwt(torch.eye(8, dtype=torch.float64), "haar")
    m = torch.cat([lo, hi], dim=1)  # row i: the transform of the i-th unit vector
    assert torch.allclose(m @ m.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    x = torch.randn(2, 8, 16, 24, dtype=torch.float64)
    for p in (wavedec2(x, "haar", 3), wavedec3(x, "haar", 3)):
        energy = p.low.square().sum() + sum(h.square().sum() for h in p.highs)
        assert torch.isclose(energy, x.square().sum(), rtol=1e-12)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: dwt2(torch.zeros(1, 1, 6, 7), "haar"), ValueError, "width is 7.*even length"),
    (lambda: dwt2(torch.zeros(1, 1, 0, 4), "haar"), ValueError, "height is 0"),
    (lambda: dwt(torch.zeros(5), "cdf97"), ValueError, "dim -1 is 5"),
    (lambda: wavedec2(torch.zeros(1, 1, 12, 20), "cdf97", 3), ValueError, r"height is 12.*2\*\*3 = 8"),
    (lambda: wavedec2(torch.zeros(1, 1, 8, 8), "cdf97", 0), ValueError, "positive integer"),
    (lambda: dwt3(torch.zeros(1, 3, 4, 4), "haar"), ValueError, "channels is 3"),
    (lambda: wavedec3(torch.zeros(1, 4, 8, 8), "haar", 3), ValueError, "channels is 4"),
    (lambda: dwt2(torch.zeros(4, 4), "haar"), ValueError, "dims"),
    (lambda: idwt2(torch.zeros(1, 6, 2, 2), "haar"), ValueError, "multiple of 4"),
    (lambda: idwt3(torch.zeros(1, 4, 2, 2), "haar"), ValueError, "multiple of 8"),
    (lambda: idwt(torch.zeros(3), torch.zeros(4), "haar"), ValueError, "differ in shape"),
    (lambda: waverec(Pyramid(torch.zeros(1, 2, 2, 2), (torch.zeros(1, 4, 2, 2),), get_wavelet("haar"), 2)),
     ValueError, "expected"),
    (lambda: dwt2(torch.zeros(1, 1, 4, 4), "db4"), ValueError, "unknown wavelet 'db4'"),
    (lambda: dwt2(torch.zeros(1, 1, 4, 4, dtype=torch.int64), "cdf97"), TypeError, "floating-point"),
    (lambda: dwt2(torch.zeros(1, 1, 4, 4), "legall53-int"), TypeError, "int64"),
])
def test_invalid_input_is_explained(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("wavelet", FLOAT)
def test_gradients(wavelet):
    def check(fn, *shape):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)

    def two_levels(t):
        p = wavedec2(t, wavelet, 2)
        return waverec(Pyramid(p.low * 2, p.highs, p.wavelet, 2))

    check(lambda t: dwt2(t, wavelet), 1, 1, 2, 4)
    check(lambda t: idwt2(t, wavelet), 1, 4, 1, 2)
    check(lambda t: dwt3(t, wavelet), 1, 2, 2, 2)
    check(two_levels, 1, 1, 4, 4)


def test_bf16_autocast_callers_can_force_fp32():
    x = torch.randn(1, 4, 16, 16) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = DWT2d("cdf97")(x)  # elementwise lifting: autocast leaves a float32 input alone
        back = IDWT2d("cdf97")(y)
        from_bf16 = DWT2d("cdf97", compute_dtype=torch.float32)(x.bfloat16())
    assert y.dtype == back.dtype == from_bf16.dtype == torch.float32
    assert_reconstructs(x, back)
    assert torch.equal(from_bf16, dwt2(x.bfloat16().float(), "cdf97"))


@pytest.mark.parametrize("wavelet", ALL)
def test_layers_tile_like_the_whole_image(wavelet):
    x = sample(wavelet, (1, 2, 16, 24), seed=4)  # 2 x 3 tiles each way
    for layer, inverse in ((DWT2d(wavelet), IDWT2d(wavelet)), (DWT3d(wavelet), IDWT3d(wavelet))):
        geo = Geometry.of(layer)
        assert geo.down == 2
        y = layer(x)
        tiled = run_tiled(layer, x, geo, core=8)
        back = run_tiled(inverse, y, Geometry.of(inverse), core=4)
        if x.dtype == torch.int64:
            assert torch.equal(tiled, y) and torch.equal(back, x)
        else:
            assert (tiled - y).abs().max() < 1e-6 * y.abs().max()
            assert_reconstructs(x, back)
    if wavelet == "cdf97":
        assert Geometry.of(DWT2d(wavelet)).halo == 4 and Geometry.of(IDWT2d(wavelet)).halo == 2
