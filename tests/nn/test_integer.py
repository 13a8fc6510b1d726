"""The integer hyper-synthesis is exact: same integers for any threads, batch or order."""
import torch

from liccodec.nn.integer import ACT_BITS, IntegerNet
from liccodec.nn.layers import conv, deconv


def make_net(seed=0):
    torch.manual_seed(seed)
    f = torch.nn.Sequential(deconv(8, 12), torch.nn.ReLU(), deconv(12, 18), torch.nn.ReLU(), conv(18, 24, 3, 1))
    return f, IntegerNet.from_float(f)


def test_close_to_float():
    f, q = make_net()
    z = torch.randn(1, 8, 5, 7) * 3
    zi = torch.round(z * 2**ACT_BITS).long()
    out = q(zi).double() / 2**ACT_BITS
    ref = f(zi.double().float() / 2**ACT_BITS).double()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_same_integers_for_threads_and_batch():
    _, q = make_net(1)
    z = torch.randint(-300_000, 300_000, (3, 8, 6, 5))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [q(z[i:i + 1]) for i in range(3)]
        torch.set_num_threads(2)
        batched = q(z)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(torch.cat(one), batched)
    assert batched.dtype == torch.int64


def test_round_trip_through_tensors():
    _, q = make_net(2)
    q2 = IntegerNet.from_tensors(q.to_tensors("x"), "x")
    z = torch.randint(-5000, 5000, (1, 8, 4, 4))
    assert torch.equal(q(z), q2(z))


class _Wrapped(torch.nn.Module):
    """A layer of another kind that declares its own integer export."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)

    def to_integer(self, relu):
        from liccodec.nn.integer import IntLayer

        return [IntLayer.from_float(self.inner, relu)]


def test_layers_declare_their_integer_export():
    import pytest

    f, q = make_net(3)
    wrapped = IntegerNet.from_float(torch.nn.Sequential(_Wrapped(f[0]), *f[1:]))
    z = torch.randint(-5000, 5000, (1, 8, 4, 4))
    assert torch.equal(wrapped(z), q(z))
    with pytest.raises(ValueError, match="to_integer"):
        IntegerNet.from_float(torch.nn.Sequential(conv(8, 8, 3, 1), torch.nn.Tanh()))
    with pytest.raises(ValueError, match="ReLU"):
        IntegerNet.from_float(torch.nn.Sequential(torch.nn.ReLU(), conv(8, 8, 3, 1)))
