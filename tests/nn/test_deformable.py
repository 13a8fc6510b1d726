"""Deformable convolution and the deformable residual module (Fu et al., TIP 2024): the
sampler computes torchvision's deformable convolution, a new module is exactly the identity,
offsets stay inside their bound, and the declared window is the receptive field, so a chain
holding the modules tiles like the whole image."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from liccodec.nn import GDN, conv, deconv
from liccodec.nn.deformable import DeformableConv2d, DeformableResidual, deform_sample
from liccodec.tiling import Geometry, run_tiled

from blocks import assert_starts_as_identity, live, receptive_reach


@pytest.mark.parametrize("kernel", [3, 5])
def test_the_sampler_is_torchvisions_deformable_convolution(kernel):
    from torchvision.ops import deform_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 9, 7, generator=g)
    w = torch.randn(5, 4, kernel, kernel, generator=g)
    off = 1.7 * torch.randn(2, 2 * kernel * kernel, 9, 7, generator=g)  # some taps land outside the map
    want = deform_conv2d(x, off, w, padding=kernel // 2)
    got = F.conv2d(deform_sample(x, off, kernel), w.reshape(5, -1, 1, 1))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_with_zero_offsets_it_is_a_plain_convolution():
    torch.manual_seed(0)
    dc = DeformableConv2d(3, 4)
    x = torch.randn(1, 3, 8, 6)
    assert torch.allclose(dc(x), F.conv2d(x, dc.weight, dc.bias, padding=1), atol=1e-5)


def test_offsets_stay_inside_their_bound():
    dc = DeformableConv2d(3, 4, max_offset=1.5)
    with torch.no_grad():
        dc.offset.bias.fill_(100.0)
    off = dc.offsets(torch.randn(1, 3, 5, 5))
    assert off.abs().max() <= 1.5 and off.abs().max() > 1.49
    with pytest.raises(ValueError, match="odd"):
        DeformableConv2d(3, 4, kernel=2)


def test_a_new_module_is_exactly_the_identity():
    """Offsets and the last convolution start at zero: the input comes back bit for bit (fp32
    and bf16), and the zero layer gets a gradient at once."""
    assert_starts_as_identity(DeformableResidual(6), 6)


@pytest.mark.parametrize("max_offset", [1.0, 2.0, 2.5])
def test_the_declared_window_is_the_receptive_field(max_offset):
    """The deformable 3x3 reads at most 1 + ceil(max_offset) away, the last 3x3 one more; with
    offsets pushed to the bound, the gradients reach exactly that far."""
    block = live(DeformableResidual(3, max_offset=max_offset))
    with torch.no_grad():
        block.deform.offset.bias.fill_(-50.0)   # every tap moved by about -max_offset
    halo = Geometry.of(block).halo
    assert halo == 1 + int(torch.tensor(max_offset).ceil()) + 1
    assert receptive_reach(block, 3) <= halo
    assert receptive_reach(block, 3) >= halo - 1


def test_a_chain_with_modules_tiles_like_the_whole_image():
    """Behind g_a's and g_s's stages, tiles give the whole image's result up to rounding, with
    offsets that have learned (random) and reach their bound."""
    torch.manual_seed(2)
    down = nn.Sequential(conv(3, 4), GDN(4), live(DeformableResidual(4)), conv(4, 5), live(DeformableResidual(5), 1))
    up = nn.Sequential(deconv(5, 4), live(DeformableResidual(4), 2), deconv(4, 3))
    with torch.no_grad():
        for m in (*down.modules(), *up.modules()):
            if isinstance(m, DeformableConv2d):
                m.offset.weight.mul_(20)
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        y = down(x)
        assert (run_tiled(down, x, Geometry.of(down), 16) - y).abs().max() < 1e-5
        back = up(y)
        assert (run_tiled(up, y, Geometry.of(up), 4) - back).abs().max() < 1e-5
