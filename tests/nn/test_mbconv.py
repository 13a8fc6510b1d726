"""MBConv blocks (LayerNorm, PReLU, local squeeze-excitation): an exact identity when built,
the declared window is the true receptive field, and a chain holding them tiles like the
whole image."""
import pytest
import torch
from torch import nn

from liccodec.nn import GDN, conv, deconv
from liccodec.nn.mbconv import MBConv, box_mean
from liccodec.tiling import Geometry, run_tiled

from blocks import assert_starts_as_identity, live, receptive_reach


def test_a_new_block_is_exactly_the_identity():
    """The last 1x1 starts at zero: in fp32 and under bf16 autocast alike the block returns its
    input bit for bit, and the zero layer gets a gradient at once."""
    assert_starts_as_identity(MBConv(6, se_window=5), 6)


def test_the_local_squeeze_is_a_windowed_mean():
    """Inside the map, the mean of the window; at the border, of its part inside the map."""
    x = torch.randn(1, 2, 9, 7)
    m = box_mean(x, 5)
    assert torch.allclose(m[0, :, 4, 3], x[0, :, 2:7, 1:6].mean((1, 2)), atol=1e-6)
    assert torch.allclose(m[0, :, 0, 0], x[0, :, :3, :3].mean((1, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        MBConv(4, se_window=4)


@pytest.mark.parametrize("window", [3, 9])
def test_the_declared_window_is_the_receptive_field(window):
    block = live(MBConv(3, se_window=window))
    halo = Geometry.of(block).halo
    assert halo == window // 2 + 1  # the squeeze's window plus the depthwise 3x3
    assert receptive_reach(block, 3) == halo


def test_a_chain_with_blocks_tiles_like_the_whole_image():
    """Behind g_a's stages and g_s's, tiles give the whole image's result up to rounding."""
    torch.manual_seed(2)
    down = nn.Sequential(conv(3, 4), GDN(4), live(MBConv(4, se_window=5)), conv(4, 5), live(MBConv(5), 1))
    up = nn.Sequential(deconv(5, 4), live(MBConv(4, se_window=3), 2), deconv(4, 3))
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        y = down(x)
        assert (run_tiled(down, x, Geometry.of(down), 16) - y).abs().max() < 1e-5
        back = up(y)
        assert (run_tiled(up, y, Geometry.of(up), 4) - back).abs().max() < 1e-5
