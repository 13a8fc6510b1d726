"""Dynamic-kernel convolution and residual block group: the batched (grouped) form is the
per-image computation, a fresh group is the identity, and gradients reach every part."""
import pytest
import torch
from torch import nn

from liccodec.nn.dynamic import DynamicConv2d, DynamicResidualGroup, RoutedSequential, describe
from liccodec.tiling import Geometry


def _trained_like(g: DynamicResidualGroup, seed: int = 0) -> DynamicResidualGroup:
    """Give the zero-initialised parts values, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (g.out.weight, g.out.bias, g.router.net[2].weight, g.router.net[2].bias):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return g


@pytest.mark.parametrize("groups", [1, 4])
def test_grouped_batch_equals_a_loop_over_images(groups):
    torch.manual_seed(0)
    conv = DynamicConv2d(8, 8, kernel=3, kernels=3, groups=groups)
    x = torch.randn(4, 8, 11, 13)
    a = torch.softmax(torch.randn(4, 3), dim=1)
    assert torch.allclose(conv(x, a), conv.reference(x, a), atol=1e-5)
    # and the reference is what mixing means: one image with one-hot attention is candidate k
    one = torch.tensor([[0.0, 1.0, 0.0]])
    k1 = nn.functional.conv2d(x[:1], conv.weight.chunk(3)[1], conv.bias[1], padding=1, groups=groups)
    assert torch.allclose(conv(x[:1], one), k1, atol=1e-5)


def test_channels_last_and_distinct_images_get_distinct_kernels():
    torch.manual_seed(1)
    g = _trained_like(DynamicResidualGroup(8, ctx_dim=6, blocks=2, kernels=4))
    g = g.to(memory_format=torch.channels_last)
    x = torch.randn(3, 8, 10, 12)
    ctx = describe(torch.rand(3, 3, 40, 48))
    y = g(x.contiguous(memory_format=torch.channels_last), ctx)
    each = torch.cat([g(x[i:i + 1], ctx[i:i + 1]) for i in range(3)])
    assert torch.allclose(y, each, atol=1e-5)
    a = g.router(ctx)
    assert a.shape == (3, 4, 4) and torch.allclose(a.sum(2), torch.ones(3, 4))
    assert not torch.allclose(a[0], a[1])


def test_a_fresh_group_is_the_identity_with_uniform_attention():
    g = DynamicResidualGroup(8, ctx_dim=6, blocks=2, kernels=4)
    x, ctx = torch.randn(2, 8, 9, 9), torch.randn(2, 6)
    assert torch.equal(g(x, ctx), x)
    assert torch.equal(g.router(ctx), torch.full((2, 4, 4), 0.25))


def test_gradients_reach_kernels_router_and_tail():
    torch.manual_seed(2)
    g = DynamicResidualGroup(8, ctx_dim=6, blocks=2, kernels=3)
    x, ctx = torch.randn(2, 8, 9, 9), torch.randn(2, 6)
    g(x, ctx).pow(2).sum().backward()
    assert g.out.weight.grad.abs().sum() > 0          # at init only the zero tail learns ...
    g.zero_grad()
    _trained_like(g)(x, ctx).pow(2).sum().backward()  # ... once it has, everything does
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_routed_sequential_routes_from_its_input_and_pins_the_whole():
    """Tiles run with the whole input's descriptor pinned compute what the whole does."""
    torch.manual_seed(3)
    seq = RoutedSequential(nn.Conv2d(3, 8, 3, padding=1), _trained_like(DynamicResidualGroup(8, 6, 1, kernels=2)),
                           nn.Conv2d(8, 3, 3, padding=1))
    assert Geometry.of(seq).halo >= 4
    x = torch.rand(1, 3, 24, 24)
    whole = seq(x)
    assert not torch.allclose(seq(x[..., :12]), whole[..., :12], atol=1e-4)  # its own descriptor differs
    with seq.pinned(x):
        left = seq(x[..., :16])
    assert torch.allclose(left[..., :8], whole[..., :8], atol=1e-5)
