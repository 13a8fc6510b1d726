"""The dictionary cross-attention (DCAE): the float site, its exact integer form, and the
widened convolution that feeds its output to a slice network without moving a warm start."""
import numpy as np
import pytest
import torch
from torch import nn

from liccodec.fixedpoint import ACT_BITS, ACT_CLIP, EXP_BITS
from liccodec.nn import dictionary
from liccodec.nn.dictionary import DictionaryAttention, IntegerDictionaryAttention, exp_table
from liccodec.nn.integer import IntegerNet
from liccodec.nn.layers import WidenedConv2d, correction_net
from liccodec.tiling import Geometry, run_tiled


def _site(seed: int = 0, c_in: int = 6, dim: int = 16, heads: int = 2, c_out: int = 5, n: int = 24):
    """A float site with a non-trivial attention (sharp, varied logits) and its dictionary."""
    torch.manual_seed(seed)
    site = DictionaryAttention(c_in, dim, heads, c_out, hidden=12).eval()
    with torch.no_grad():
        site.log_temperature.fill_(2.5)
        site.out.weight.normal_(0, 0.3)
        site.out.bias.normal_(0, 0.1)
    return site, torch.randn(n, dim)


def _exact(site, dic) -> IntegerDictionaryAttention:
    return IntegerDictionaryAttention.from_float(site, dic, torch.from_numpy(exp_table()))


def _context(shape, seed: int = 1) -> tuple[torch.Tensor, np.ndarray]:
    """A float context and the same in ACT_BITS fixed point (what the integer site reads)."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2
    q = torch.round(x * 2**ACT_BITS).to(torch.int64)
    return q.double() / 2**ACT_BITS, q.numpy()


def test_shapes():
    site, dic = _site()
    out = site(torch.randn(3, 6, 5, 7), dic)
    assert out.shape == (3, 5, 5, 7)
    keys, values, bias = site.tables(dic)
    assert keys.shape == (2, 24, 8) and values.shape == (2, 24, 5) and bias.shape == (5,)
    ex = _exact(site, dic)
    assert ex(np.zeros((2, 6, 4, 3), np.int64)).shape == (2, 5, 4, 3)
    with pytest.raises(ValueError, match="does not split into 3 heads"):
        DictionaryAttention(6, 16, 3, 5, 12)


def test_exp_table():
    e = exp_table()
    assert e[0] == 1 << EXP_BITS and e[-1] == 0 and (e[:-1] > 0).all()
    assert (np.diff(e) <= 0).all()
    # it ends where 2^16 exp(-d/256) rounds to zero: below 2^-17 of the largest weight
    assert len(e) == 3018


def test_the_integer_site_is_the_float_one_to_quantization():
    """Integer logits, exp table and division against the float softmax: the output agrees to
    a thousandth of its spread on average, a hundredth at worst (the query network's weights
    are quantized too, and sharp logits magnify its rounding)."""
    site, dic = _site()
    ex = _exact(site, dic)
    ctx, ctx_q = _context((2, 6, 9, 11))
    with torch.no_grad():
        ref = site(ctx.float(), dic).double()
        logits = torch.einsum("bhdp,hnd->bhpn", site.query(ctx.float()).view(2, 2, 8, -1), site.tables(dic)[0])
    assert logits.max(-1).values.sub(logits.min(-1).values).median() > 5  # the softmax is sharp, not uniform
    got = torch.from_numpy(ex(ctx_q)).double() / 2**ACT_BITS
    err = (got - ref).abs()
    assert err.mean() < 1e-3 * ref.std() and err.max() < 1e-2 * ref.std()


def test_the_integer_site_is_exact_across_batches_chunks_and_tiles(monkeypatch):
    site, dic = _site(seed=3)
    ex = _exact(site, dic)
    _, ctx = _context((3, 6, 12, 10), seed=4)
    whole = ex(ctx)
    assert np.array_equal(np.concatenate([ex(ctx[i:i + 1]) for i in range(3)]), whole)
    monkeypatch.setattr(dictionary, "CHUNK", 7)  # blocks of positions that split rows
    assert np.array_equal(ex(ctx), whole)
    monkeypatch.undo()
    geo = Geometry.of(ex)
    assert geo.halo >= 1  # the query network's 3x3 convolution
    for core in (1, 3, 5):
        assert np.array_equal(run_tiled(ex, ctx, geo, core), whole), core


def test_the_integer_site_round_trips_through_tensors():
    site, dic = _site(seed=5)
    ex = _exact(site, dic)
    t = ex.to_tensors("exact.attn.0")
    again = IntegerDictionaryAttention.from_tensors(t, "exact.attn.0", ex.exp)
    _, ctx = _context((1, 6, 4, 4), seed=6)
    assert np.array_equal(again(ctx), ex(ctx))
    assert again.to_tensors("exact.attn.0").keys() == t.keys()


def test_the_integer_site_saturates_instead_of_overflowing():
    """Contexts at the activation clip: logits stay exact (bounds checked at export) and the
    output stays within the clip."""
    site, dic = _site(seed=7)
    ex = _exact(site, dic)
    ctx = np.full((1, 6, 3, 3), ACT_CLIP, np.int64)
    ctx[..., 1, :] = -ACT_CLIP
    out = ex(ctx)
    assert np.abs(out).max() <= ACT_CLIP
    assert np.array_equal(out, ex(ctx.copy()))


def test_a_widened_convolution_is_the_narrow_one_until_it_learns():
    """Zero weights for the new inputs: the output, and the integer export, are the narrow
    layer's bit for bit whatever the new inputs hold; a warm start rebuilds both parts."""
    torch.manual_seed(0)
    narrow = correction_net(6, 8, 4)
    wide = correction_net(6, 8, 4, c_extra=3)
    wide.load_state_dict(narrow.state_dict(), strict=False)
    assert not wide[0].extra.any()
    x = torch.randn(2, 6, 5, 5)
    e = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(wide(torch.cat([x, e], dim=1)), narrow(x))
    a, b = IntegerNet.from_float(narrow).layers[0], IntegerNet.from_float(wide).layers[0]
    assert a.shift == b.shift and torch.equal(b.weight[:, :6], a.weight) and not b.weight[:, 6:].any()
    with torch.no_grad():
        wide[0].extra.normal_(0, 0.1)
    layer = IntegerNet.from_float(wide).layers[0]
    w, bias = layer.weight.double() / 2**layer.shift, layer.bias.double() / 2 ** (layer.shift + ACT_BITS)
    rebuilt = wide[0].from_integer(w.float(), bias.float())
    assert rebuilt.keys() == {"weight", "bias", "extra"}
    assert (rebuilt["extra"] - wide[0].extra).abs().max() <= 2.0 ** -layer.shift
    assert wide[0].from_integer(w[:, :6].float(), bias.float()).keys() == {"weight", "bias"}
    with pytest.raises(ValueError, match="does not fit"):
        wide[0].from_integer(w[:, :5].float(), bias.float())
    assert isinstance(wide[0], nn.Conv2d) and isinstance(wide[0], WidenedConv2d)
