"""The post-quantization filter: the identity when built, then a residual refinement of y_hat
whose receptive field is what it declares."""
import torch

from liccodec.nn.pqf import PostQuantFilter
from liccodec.tiling import Geometry

from blocks import live, receptive_reach


def test_a_new_filter_is_exactly_the_identity_and_trains():
    torch.manual_seed(1)
    f = PostQuantFilter(6, 8)
    y_hat = torch.randn(2, 6, 8, 8).round()
    with torch.no_grad():
        assert torch.equal(f(y_hat), y_hat)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(f(y_hat.bfloat16()), y_hat.bfloat16())
    f(y_hat).pow(2).sum().backward()
    assert f.net[-1].weight.grad.abs().sum() > 0


def test_the_declared_window_is_the_receptive_field():
    f = live(PostQuantFilter(3, 4))
    assert Geometry.of(f).halo == 3 == receptive_reach(f, 3)
