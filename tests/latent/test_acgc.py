"""The ACGC contexts (latent.acgc): the integer attention is the float softmax's to rounding,
sees only valid keys, is the same per position whatever the batch or the crop, and a latent
codec whose attention has learned still decodes the encoder's latents exactly, tiled or whole."""
import torch

from liccodec.latent.acgc import ACGCChannel, ACGCSite, ACGCStep, float_attend, int_attend, windows
from liccodec.nn.dictionary import exp_table
from liccodec.nn.integer import ACT_BITS, IntegerNet

EXP = torch.from_numpy(exp_table())


def _q(t: torch.Tensor) -> torch.Tensor:
    return torch.round(t * 2**ACT_BITS).to(torch.int64)


def test_integer_attention_follows_the_float_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 6, generator=g), torch.randn(2, 4, 5, 6, 9, generator=g), \
        torch.randn(2, 3, 5, 6, 9, generator=g)
    valid = torch.rand(5, 6, 9, generator=g) > 0.3
    valid[..., 4] = True
    ref = float_attend(q, k, v, valid)
    out = int_attend(_q(q), _q(k), _q(v), valid, EXP).double() / 2**ACT_BITS
    assert (out - ref.double()).abs().max() < 0.02


def test_invalid_keys_take_no_part():
    q, k = _q(torch.ones(1, 2, 1, 1)), _q(torch.ones(1, 2, 1, 1, 3))
    v = _q(torch.tensor([1.0, 2.0, 1e3]).view(1, 1, 1, 1, 3))
    valid = torch.tensor([True, True, False]).view(1, 1, 3)
    assert int_attend(q, k, v, valid, EXP).item() == _q(torch.tensor(1.5)).item()


def test_windows_mark_the_border():
    vals, valid = windows(torch.arange(12.).view(1, 1, 3, 4), 3)
    assert vals.shape == (1, 1, 3, 4, 9) and valid[0, 0].sum() == 4 and valid[1, 1].all()
    assert vals[0, 0, 1, 1, 4] == 5  # the centre is the position itself


def _site_and_step(c=3, i=2, window=3):
    torch.manual_seed(0)
    site = ACGCSite(c, i, dim=4, hidden=8, window=window)
    nets = {n: IntegerNet.from_float(net) for n, net in site.nets().items()}
    return site, ACGCStep(c, i, window, nets, EXP)


def test_the_exact_step_is_per_position_and_tiles():
    from liccodec.tiling import Geometry, run_tiled

    site, step = _site_and_step()
    ctx = _q(torch.randn(2, 3 * 4, 12, 10))
    whole = step(ctx)
    assert whole.shape == (2, 6, 12, 10) and whole.dtype == torch.int64
    assert torch.equal(step(ctx[1:]), whole[1:])                      # batch independent
    assert torch.equal(run_tiled(step, ctx, Geometry.of(step), 4), whole)
    with torch.no_grad():
        ref = site(ctx.double().div(2**ACT_BITS).float())
    assert (whole.double() / 2**ACT_BITS - ref.double()).abs().max() < 0.05


def test_a_trained_acgc_codec_decodes_exactly_tiled_or_whole():
    """The parameter networks given weights (as after training), so the contexts move scales
    and means: the decoder still rebuilds the encoder's latents, with or without tiles."""
    torch.manual_seed(3)
    lat = ACGCChannel(8, 12, 3, 3, 16, pa_hidden=8, acgc_dim=4, acgc_hidden=8, acgc_window=3).eval()
    with torch.no_grad():
        for name, p in lat.named_parameters():
            if name.startswith(("pa_a.", "pa_n.", "cc.")) and not p.any():
                p.normal_(0, 0.05)
        lat.h_s[-1].bias[:12] = 3.0
    lat.refresh()
    exact = lat.export_exact()
    assert {"exact.acgc.1.q_ch.0.weight", "exact.acgc.2.k_sp.0.weight", "exact.acgc_exp"} <= exact.keys()
    lat.load_exact(exact)
    y = torch.randn(1, 12, 16, 20) * 6
    streams, y_hat = lat.compress(y, 2000)
    assert torch.equal(lat.decompress(streams, (4, 5), 2000), y_hat)
    assert torch.equal(lat.decompress(streams, (4, 5), 2000, 4), y_hat)
    # the contexts matter: the same codec with the attention's output ignored codes other bytes
    with torch.no_grad():
        for net in (*lat.pa_a[1:], *lat.pa_n[1:]):
            net[0].weight[:, 6:12].zero_()
    lat.load_exact(lat.export_exact())
    assert lat.compress(y, 2000)[0] != streams
