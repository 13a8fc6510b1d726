"""The dense block and S2LIC's dense feature enhancement (nn.dense): a new enhancement is the
identity, it learns, and it tiles exactly with the receptive field it declares."""
import torch

from liccodec.nn.dense import DenseBlock, DenseEnhancement
from liccodec.tiling import Geometry, run_tiled


def test_a_dense_layer_reads_every_earlier_output():
    block = DenseBlock(4, growth=3, layers=3)
    assert [c.in_channels for c in block.convs] == [4, 7, 10] and block.fuse.in_channels == 13
    x = torch.randn(1, 4, 9, 9)
    assert block(x).shape == x.shape


def test_a_new_enhancement_is_the_identity_and_learns():
    torch.manual_seed(0)
    m = DenseEnhancement(3, width=6, growth=4, layers=2, enh_width=4)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(m(x), x)
    (m(x) - x.flip(-1)).pow(2).mean().backward()
    assert m.out.weight.grad.abs().sum() > 0


def test_it_tiles_exactly():
    torch.manual_seed(1)
    m = DenseEnhancement(3, width=6, growth=4, layers=2, enh_width=4).eval()
    with torch.no_grad():
        m.out.weight.normal_(0, 0.1)
        x = torch.rand(1, 3, 96, 80)
        geo = Geometry.of(m)
        assert geo.halo >= 1 + 2 + 1 + 2 + 1  # every 3x3 layer's reach
        assert (run_tiled(m, x, geo, 16) - m(x)).abs().max() < 1e-5
