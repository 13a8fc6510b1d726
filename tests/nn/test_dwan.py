"""Wavelet-domain attention (DWAN): an exact identity when built, its declared window is its
true receptive field, and behind stride-2 stages it tiles like the whole image."""
import pytest
import torch
from torch import nn

from liccodec.nn import GDN, conv
from liccodec.nn.dwan import WaveletAttention
from liccodec.tiling import Geometry, run_tiled

from blocks import assert_starts_as_identity, live, receptive_reach


def test_a_new_block_is_exactly_the_identity():
    assert_starts_as_identity(WaveletAttention(6), 6)


@pytest.mark.parametrize("kernel", [3, 5])
def test_the_declared_window_is_the_receptive_field(kernel):
    """Haar pairs two samples, the mask's kernel works at half resolution: for a k x k
    kernel an output reads k // 2 * 2 + 1 inputs on each side, no more (even and odd outputs)."""
    block = live(WaveletAttention(3, kernel=kernel))
    (op,) = block.axis_ops()
    assert op[0] is False and op[2] == 1 and op[1] == 2 * op[3] + 1
    assert op[3] == kernel // 2 * 2 + 1
    assert receptive_reach(block, 3) == op[3]


def test_behind_stride_two_stages_it_tiles_like_the_whole_image():
    """g_a's tiles start on multiples of its stride, so at even positions of every block
    behind a stride-2 stage: the DWT pairs the same samples as on the whole image."""
    torch.manual_seed(3)
    down = nn.Sequential(conv(3, 4), GDN(4), live(WaveletAttention(4, kernel=3)), conv(4, 5),
                         live(WaveletAttention(5), 1), conv(5, 6))
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        assert (run_tiled(down, x, Geometry.of(down), 16) - down(x)).abs().max() < 1e-5
