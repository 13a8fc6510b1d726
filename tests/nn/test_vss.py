"""The chunked selective scan equals the position-by-position recurrence; SS2D scans the four
directions of the image; an EVSS block starts as the identity and trains."""
import pytest
import torch
import torch.nn.functional as F

from liccodec.nn.vss import EVSS, SS2D, _direction, _merge, selective_scan, selective_scan_reference


def _scan_inputs(b=2, g=4, d=5, n=3, L=77, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    delta = F.softplus(r(b, g, d, L)) * 2  # large enough that some steps hit the clamp
    return r(b, g, d, L), delta, -torch.exp(r(g, d)), r(b, g, n, L), r(b, g, n, L), r(g, d)


@pytest.mark.parametrize("chunk", [1, 8, 32, 128])
def test_chunked_scan_equals_the_recurrence(chunk):
    """L = 77 is not a multiple of any chunk but 1: the padding is exercised too."""
    args = _scan_inputs()
    y, ref = selective_scan(*args, chunk=chunk), selective_scan_reference(*args, chunk=chunk)
    assert y.dtype == torch.float64
    assert torch.allclose(y, ref, rtol=0, atol=1e-5 * ref.abs().max().item())
    assert (y - ref).abs().max() < 1e-9


def test_scan_is_fp32_under_bf16_autocast_and_finite_for_fast_decays():
    u, delta, A, B, C, D = (t.float() for t in _scan_inputs(L=200))
    delta = delta * 50  # most steps at the clamp: a chunk decays by up to exp(-60)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = selective_scan(u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16(), D, chunk=32)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    ref = selective_scan_reference(*(t.bfloat16().double() for t in (u, delta)), A.double(),
                                   *(t.bfloat16().double() for t in (B, C)), D.double(), chunk=32)
    assert torch.allclose(y.double(), ref, atol=1e-4, rtol=1e-4)


def test_ss2d_scans_the_four_directions():
    """SS2D equals four separate recurrences over the row-major, column-major and reversed
    sequences, mapped back to the grid and summed."""
    torch.manual_seed(0)
    m = SS2D(6, d_state=3, chunk=4).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    b, e, h, w = x.shape
    k, r, n = 4, m.dt_rank, m.d_state
    proj = m.x_proj(x).view(b, k, r + 2 * n, h, w)
    dts, Bs, Cs = proj.split([r, n, n], dim=2)
    dts = m.dt_proj(dts.reshape(b, k * r, h, w)).view(b, k, e, h, w)
    ys = []
    for i in range(4):
        delta = F.softplus(_direction(dts[:, i], i) + m.dt_bias[i][None, :, None])
        y = selective_scan_reference(_direction(x, i)[:, None], delta[:, None], -torch.exp(m.A_log[i:i + 1]),
                                     _direction(Bs[:, i], i)[:, None], _direction(Cs[:, i], i)[:, None],
                                     m.D[i:i + 1], chunk=4)
        ys.append(y[:, 0])
    # each direction on its own: put it back on the grid through _merge with the others zero
    expect = sum(_merge(torch.stack([ys[j] if j == i else torch.zeros_like(ys[j]) for j in range(4)], 1), h, w)
                 for i in range(4))
    assert torch.allclose(m(x), expect, atol=1e-10)
    # _merge inverts the orders: a map read in order i and merged alone comes back unchanged
    for i in range(4):
        only = torch.stack([_direction(x, i) if j == i else torch.zeros(b, e, h * w, dtype=x.dtype)
                            for j in range(4)], 1)
        assert torch.equal(_merge(only, h, w), x)


def test_evss_is_the_identity_at_init_and_every_parameter_trains():
    torch.manual_seed(0)
    m = EVSS(8, d_state=4, chunk=8)
    x = torch.randn(2, 8, 6, 10)
    assert torch.equal(m(x), x)
    m(x).pow(2).sum().backward()  # the zero output convolution: only it sees a gradient yet
    assert all(p.grad is not None for p in m.parameters())
    assert m.out.weight.grad.abs().sum() > 0
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    m.zero_grad()
    (m(x) - x).pow(2).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in m.parameters())


def test_evss_under_bf16_channels_last():
    torch.manual_seed(0)
    m = EVSS(8, d_state=4, chunk=8)
    torch.nn.init.normal_(m.out.weight, 0, 0.1)
    x = torch.randn(2, 8, 6, 10).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.allclose(y.float(), m(x), atol=0.05)
