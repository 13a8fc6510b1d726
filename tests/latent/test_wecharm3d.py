"""The 3D wavelet-domain entropy model (3DWeChARM, arch ``weconv3d``): its integer band map is
the float one, an untrained model is the hyperprior carried into the 3D wavelet domain, the
low band is coded before (and conditions) the high bands, the LF-first order is one flag, and
the rate of the two parts reaches training apart."""
import numpy as np
import pytest
import torch

from liccodec.latent.hyperprior import gaussian_likelihood
from liccodec.latent.wavelet import SCALE_MIN_Q, band_params, band_params_q
from liccodec.latent.wavelet3d import Wavelet3DChannel, coding_steps_3d
from liccodec.models import get_arch
from liccodec.nn.integer import ACT_BITS, ACT_CLIP
from liccodec.nn.wavelet import dwt3, idwt3

from test_wecharm import _hyper_of


def test_the_integer_band_map_is_the_float_one():
    """Scales: the root mean square over each 2x2 block of a channel pair (one scale for all
    eight bands); means: the bands of nn.wavelet.dwt3. Fixed point agrees to within one least
    bit, and the worst a file can hold stays inside int64 and the clip."""
    g = torch.Generator().manual_seed(3)
    scales_q = torch.randint(-500, 40 << ACT_BITS, (1, 6, 8, 6), generator=g)
    means_q = torch.randint(-(30 << ACT_BITS), 30 << ACT_BITS, (1, 6, 8, 6), generator=g)
    S_q, Mn_q = band_params_q(scales_q.numpy(), means_q.numpy(), 3)
    S, Mn = band_params(scales_q.double() / 2**ACT_BITS, means_q.double() / 2**ACT_BITS, 3)
    assert S_q.shape == (1, 3, 4, 3) and Mn_q.shape == (1, 24, 4, 3)
    assert np.abs(S_q - S.numpy() * 2**ACT_BITS).max() <= 1.0
    assert np.abs(Mn_q - Mn.numpy() * 2**ACT_BITS).max() <= 0.5 + 1e-3
    assert S_q.min() >= SCALE_MIN_Q
    big = np.full((1, 2, 2, 2), ACT_CLIP, dtype=np.int64)
    S_big, Mn_big = band_params_q(big, big, 3)
    assert S_big.item() == ACT_CLIP
    assert abs(Mn_big[0, 0, 0, 0] - 8 * ACT_CLIP / (2 * np.sqrt(2))) <= 1  # LLL of a constant block
    assert not Mn_big[0, 1:].any()


def test_coding_steps_cover_the_bands_once_low_band_first():
    steps = coding_steps_3d(12, 3)  # 6 channel pairs, 2 per slice
    assert [len(s) for s in steps] == [2, 2, 2, 14, 14, 14]
    assert sorted(np.concatenate(steps).tolist()) == list(range(48))
    assert steps[1].tolist() == [2, 3]  # LLL, channel pairs 2, 3
    assert steps[3].tolist() == [b * 6 + j for b in range(1, 8) for j in (0, 1)]  # the 7 high bands, pairs 0, 1
    joint = coding_steps_3d(12, 3, lf_first=False)
    assert [len(s) for s in joint] == [16, 16, 16]
    assert joint[0].tolist() == [b * 6 + j for b in range(8) for j in (0, 1)]
    with pytest.raises(ValueError, match="channel pairs"):
        Wavelet3DChannel(8, 12, 3, 4, 16)  # 6 pairs do not split into 4 slices


def test_an_untrained_model_is_the_band_mapped_hyperprior():
    """Zero corrections (and zero residual prediction): W = DWT3(y_g) is coded with the band
    map of the hyperprior's parameters, the likelihoods come as the low band (LLL) and the
    seven others, and the synthesis gets IDWT3 of the rounded bands."""
    torch.manual_seed(0)
    spec = get_arch("weconv3d")
    model = spec.build(**spec.tiny).eval()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    level = torch.tensor([0.4, 1.6])
    out, y_g, scales, means = _hyper_of(model, x, level)
    S, Mn = band_params(scales, means, 3)
    W = dwt3(y_g, "haar")
    W_hat = torch.round(W - Mn) + Mn
    want = gaussian_likelihood(W_hat, S.repeat(1, 8, 1, 1), Mn)
    assert list(out.likelihoods) == ["y_lf", "y_hf", "z"]
    assert torch.equal(torch.cat([out.likelihoods["y_lf"], out.likelihoods["y_hf"]], dim=1), want)
    assert out.likelihoods["y_lf"].shape[1] == model.latent.M // 2
    _, ig = model.latent.gain(level)
    with torch.no_grad():
        x_hat = model.g_s(idwt3(W_hat, "haar") * ig)
    assert torch.equal(out.x_hat, x_hat)


@pytest.fixture(params=[True, False], ids=["lf_first", "joint"])
def exported(request, tiny_builder, monkeypatch):
    """The tiny model (random weights, corrections live) with its exact parts exported, in
    either coding order."""
    monkeypatch.setitem(get_arch("weconv3d").tiny, "lf_first", request.param)
    model = tiny_builder[0](arch="weconv3d")
    model.latent.load_exact(model.latent.export_exact())
    return model


def _run_steps(lat, symbols):
    """The exact steps on made-up symbols: each step's (scale indices, means)."""
    g = torch.Generator().manual_seed(5)
    scales_q = torch.randint(0, 8 << ACT_BITS, (1, lat.M, 4, 4), generator=g)
    means_q = torch.randint(-(4 << ACT_BITS), 4 << ACT_BITS, (1, lat.M, 4, 4), generator=g)
    seen = []

    def code(k, index, m):
        seen.append((index.copy(), m.copy()))
        return symbols[:, lat.steps[k]]
    lat._code_steps(lat.exact, scales_q, means_q, None, code)
    return seen


def _same(a, b) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_each_step_reads_only_what_was_coded_before_it(exported):
    """Change one symbol of step k: steps 0..k get the same scale indices and means, some
    later step moves. With LF first, a change in the low band reaches the high bands."""
    lat = exported.latent
    base = np.random.default_rng(6).integers(-3, 4, (1, 4 * lat.M, 2, 2))
    ref = _run_steps(lat, base)
    n = len(lat.steps)
    for k in range(n - 1):
        sym = base.copy()
        sym[0, lat.steps[k][0], 1, 0] += 5
        got = _run_steps(lat, sym)
        assert all(_same(got[j], ref[j]) for j in range(k + 1)), k
        assert any(not _same(got[j], ref[j]) for j in range(k + 1, n)), k
    if lat.lf_first:
        K = lat.slices
        sym = base.copy()
        sym[0, lat.steps[K - 1][0], 0, 1] += 5  # the last LLL slice
        got = _run_steps(lat, sym)
        assert all(_same(got[j], ref[j]) for j in range(K))
        assert all(not _same(got[j], ref[j]) for j in range(K, 2 * K))  # every HF step reads all of LLL


def test_files_decode_to_the_encoders_latents_tiled_or_not_and_with_a_quality_map(exported):
    lat = exported.latent
    with torch.no_grad():
        y = exported.g_a(torch.rand(1, 3, 256, 128, generator=torch.Generator().manual_seed(7)))
    streams, y_hat = lat.compress(y, 1500)
    assert torch.equal(lat.decompress(streams, (4, 2), 1500), y_hat)
    tiled, y_hat_tiled = lat.compress(y, 1500, tile=4)
    assert tiled == streams
    assert torch.allclose(lat.decompress(streams, (4, 2), 1500, tile=4), y_hat, atol=1e-5)
    qmap = np.full(y.shape[-2:], 1500)
    qmap[:4, :4] = 3000
    roi, y_hat_roi = lat.compress(y, 1500, None, qmap)
    assert torch.equal(lat.decompress(roi, (4, 2), 1500, None, qmap), y_hat_roi)
    assert roi != streams


def test_its_networks_are_named_by_coding_step():
    """The step networks are ``band.k`` in coding order (what the weights file holds as
    ``exact.band.k``); an inference build has none of them."""
    lat = Wavelet3DChannel(8, 12, 3, 3, 16, lrp=True)
    nets = sorted({k.split(".")[1] for k in lat.state_dict() if k.startswith("band.")}, key=int)
    assert nets == [str(k) for k in range(6)]
    assert lat.band[0][0].weight.shape[1] == 2 + 2 and lat.band[3][0].weight.shape[1] == 2 + 14 + 6
    assert set(lat.integer_nets()) == {"h_s", *(f"band.{k}" for k in range(6))}
    assert {k.split(".")[0] for k in lat.state_dict() if k.startswith("wlrp.")} == {"wlrp"}
    inference = Wavelet3DChannel(8, 12, 3, 3, 16, lrp=True, inference=True).state_dict()
    assert not any(k.startswith(("band.", "h_s.")) for k in inference)
    ex = lat.export_exact()
    assert {k.split(".")[2] for k in ex if k.startswith("exact.band.")} == {str(k) for k in range(6)}
