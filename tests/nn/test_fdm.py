"""FDM splits into the Haar low band and the remainder, starts as the identity and trains."""
import pytest
import torch

from liccodec.nn.fdm import FDM, haar_split
from liccodec.nn.wavelet import dwt2, idwt2


def test_low_band_is_the_haar_ll_reconstruction():
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    low, high = haar_split(x)
    bands = dwt2(x, "haar")
    c = x.shape[1]
    only_ll = torch.cat([bands[:, :c], torch.zeros_like(bands[:, c:])], 1)
    assert torch.allclose(low, idwt2(only_ll, "haar"), atol=1e-12)
    assert torch.allclose(low + high, x, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="even"):
        haar_split(x[..., :5])


def test_fdm_is_the_identity_at_init_and_every_parameter_trains():
    torch.manual_seed(0)
    m = FDM(8)
    x = torch.randn(2, 8, 6, 10)
    assert torch.equal(m(x), x)
    m(x).pow(2).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    m.zero_grad()
    (m(x) - x).pow(2).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in m.parameters())


def test_gains_follow_the_content():
    """The band gains come from the image's own statistics: a smooth and a rough image get
    different gains from the same block."""
    torch.manual_seed(0)
    m = FDM(4)
    seen = []
    m.gains.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    m(torch.linspace(0, 1, 64).view(1, 1, 8, 8).repeat(1, 4, 1, 1))
    m(torch.randn(1, 4, 8, 8))
    assert not torch.allclose(seen[0], seen[1])
