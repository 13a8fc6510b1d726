"""The wavelet-domain entropy model (WeChARM, arch ``weconv``): its integer band map is the
float one, an untrained model is the hyperprior carried into the wavelet domain, the LF
bands are coded before (and condition) the HF bands, and region-of-interest files decode."""
import numpy as np
import pytest
import torch

from liccodec.latent.hyperprior import gaussian_likelihood
from liccodec.latent.wavelet import SCALE_MIN_Q, band_params, band_params_q, coding_steps, isqrt
from liccodec.models import get_arch
from liccodec.nn.integer import ACT_BITS, ACT_CLIP
from liccodec.nn.wavelet import dwt2, idwt2


def test_isqrt_is_exact():
    n = np.array([0, 1, 2, 3, 4, 15, 16, 17, (1 << 46) - 1, 1 << 46, (1 << 53) - 1], dtype=np.int64)
    r = np.array([0, 1, 1, 1, 2, 3, 4, 4, (1 << 23) - 1, 1 << 23, 94906265], dtype=np.int64)
    assert np.array_equal(isqrt(n), r)
    rng = np.random.default_rng(0)
    roots = rng.integers(0, 1 << 26, 10000)
    for m in (roots * roots - 1, roots * roots, roots * roots + 2 * roots):  # just below, at, at the top
        got = isqrt(np.maximum(m, 0))
        assert np.all(got * got <= np.maximum(m, 0)) and np.all((got + 1) * (got + 1) > np.maximum(m, 0))


def test_the_integer_band_map_is_the_float_one():
    """Scales: the root mean square over each 2x2 block (one scale for all four bands);
    means: the bands of nn.wavelet.dwt2. Fixed point agrees to within one least bit."""
    g = torch.Generator().manual_seed(3)
    scales_q = torch.randint(-500, 40 << ACT_BITS, (1, 5, 8, 6), generator=g)
    means_q = torch.randint(-(30 << ACT_BITS), 30 << ACT_BITS, (1, 5, 8, 6), generator=g)
    S_q, Mn_q = band_params_q(scales_q.numpy(), means_q.numpy())
    S, Mn = band_params(scales_q.double() / 2**ACT_BITS, means_q.double() / 2**ACT_BITS)
    assert S_q.shape == (1, 5, 4, 3) and Mn_q.shape == (1, 20, 4, 3)
    assert np.abs(S_q - S.numpy() * 2**ACT_BITS).max() <= 1.0
    assert np.abs(Mn_q - Mn.numpy() * 2**ACT_BITS).max() <= 0.5 + 1e-6
    assert S_q.min() >= SCALE_MIN_Q
    # the worst a file can hold: the clipped hyper output stays inside int64 and the clip
    big = np.full((1, 1, 2, 2), ACT_CLIP, dtype=np.int64)
    S_big, _ = band_params_q(big, big)
    assert S_big.item() == ACT_CLIP


def test_coding_steps_cover_the_bands_once():
    steps = coding_steps(12, 3)
    assert [len(s) for s in steps] == [4, 4, 4, 12, 12, 12]
    assert sorted(np.concatenate(steps).tolist()) == list(range(48))
    assert steps[3].tolist() == [12, 13, 14, 15, 24, 25, 26, 27, 36, 37, 38, 39]  # LH, HL, HH of channels 0-3


def _hyper_of(model, x, level):
    """(y_g, scales, means) that the model's latent codec sees, captured by hooks."""
    seen = {}
    lat = model.latent
    h1 = lat.h_a.register_forward_pre_hook(lambda m, a: seen.setdefault("y_g", a[0].detach().clone()))
    h2 = lat.h_s.register_forward_hook(lambda m, a, out: seen.setdefault("hs", out.detach().clone()))
    try:
        with torch.no_grad():
            out = model(x, level)
    finally:
        h1.remove()
        h2.remove()
    scales, means = seen["hs"].chunk(2, dim=1)
    return out, seen["y_g"], scales, means


def test_an_untrained_model_is_the_band_mapped_hyperprior():
    """Zero corrections (and zero residual prediction): W = DWT(y_g) is coded with the band
    map of the hyperprior's parameters, and the synthesis gets IDWT of the rounded bands."""
    torch.manual_seed(0)
    spec = get_arch("weconv")
    model = spec.build(**spec.tiny).eval()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    level = torch.tensor([0.4, 1.6])
    out, y_g, scales, means = _hyper_of(model, x, level)
    S, Mn = band_params(scales, means)
    W = dwt2(y_g, "haar")
    W_hat = torch.round(W - Mn) + Mn
    want = gaussian_likelihood(W_hat, S.repeat(1, 4, 1, 1), Mn)
    assert torch.equal(out.likelihoods["y"], want)
    _, ig = model.latent.gain(level)
    with torch.no_grad():
        x_hat = model.g_s(idwt2(W_hat, "haar") * ig)
    assert torch.equal(out.x_hat, x_hat)


@pytest.fixture()
def exported(tiny_builder):
    build_tiny, _ = tiny_builder
    model = build_tiny(arch="weconv")
    model.latent.load_exact(model.latent.export_exact())
    return model


def test_lf_bands_are_coded_first_and_condition_the_hf_bands(exported):
    """Run the exact steps on made-up symbols and change one: the steps before it get the
    same scale indices and means, and a changed LL symbol moves the HF steps' parameters."""
    lat = exported.latent
    ex = lat.exact
    g = torch.Generator().manual_seed(5)
    scales_q = torch.randint(0, 8 << ACT_BITS, (1, lat.M, 4, 4), generator=g)
    means_q = torch.randint(-(4 << ACT_BITS), 4 << ACT_BITS, (1, lat.M, 4, 4), generator=g)
    base = np.random.default_rng(6).integers(-3, 4, (1, 4 * lat.M, 2, 2))

    def run(symbols):
        seen = []

        def code(k, index, m):
            seen.append((index.copy(), m.copy()))
            return symbols[:, lat.steps[k]]
        lat._code_steps(ex, scales_q, means_q, None, code)
        return seen

    ref = run(base)
    K = lat.slices
    for k_changed, channel in ((1, lat.steps[1][0]), (K, lat.steps[K][0])):  # LL step 1, HF step 0
        sym = base.copy()
        sym[0, channel, 1, 0] += 5
        got = run(sym)
        for k in range(k_changed + 1):  # no step up to the changed one reads it
            assert np.array_equal(got[k][0], ref[k][0]) and np.array_equal(got[k][1], ref[k][1]), k
        later = [k for k in range(k_changed + 1, 2 * K)
                 if not (np.array_equal(got[k][0], ref[k][0]) and np.array_equal(got[k][1], ref[k][1]))]
        assert later
    # LL conditions HF: the LL change reached an HF step
    sym = base.copy()
    sym[0, lat.steps[K - 1][0], 0, 1] += 5
    got = run(sym)
    assert any(not np.array_equal(got[k][1], ref[k][1]) for k in range(K, 2 * K))


def test_a_quality_map_file_decodes_to_the_encoders_latents(exported):
    """Region-of-interest coding: the gains vary per position of y before the DWT and are
    undone after the inverse DWT, outside the exact path."""
    lat = exported.latent
    with torch.no_grad():
        y = exported.g_a(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(7)))
    qmap = np.full(y.shape[-2:], 1500)
    qmap[:4, :4] = 3000
    streams, y_hat = lat.compress(y, 1500, None, qmap)
    assert torch.equal(lat.decompress(streams, (2, 2), 1500, None, qmap), y_hat)
    uniform, y_hat_uniform = lat.compress(y, 1500)
    assert streams != uniform and not torch.equal(y_hat, y_hat_uniform)
