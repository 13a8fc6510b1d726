"""The WeConv block: an exact identity when built, its declared window is its true receptive
field, and behind a stride-2 stage it tiles like the whole image."""
import pytest
import torch
from torch import nn

from liccodec.nn import conv, deconv
from liccodec.nn.weconv import WaveletConv
from liccodec.tiling import Geometry, run_tiled

from blocks import assert_starts_as_identity


def _live(block: WaveletConv, seed: int = 0) -> WaveletConv:
    torch.manual_seed(seed)
    with torch.no_grad():
        block.out.weight.normal_(0, 0.2)
        block.out.bias.normal_(0, 0.1)
    return block


def test_a_new_block_is_exactly_the_identity():
    """The last 1x1 starts at zero: inserted into trained transforms it changes nothing, in
    fp32 and under bf16 autocast alike."""
    assert_starts_as_identity(WaveletConv(6), 6)


@pytest.mark.parametrize("kernel", [3, 5])
def test_the_declared_window_is_the_receptive_field(kernel):
    block = _live(WaveletConv(3, kernel=kernel))
    (op,) = block.axis_ops()
    transposed, k, stride, pad = op
    assert (transposed, stride, 2 * pad + 1) == (False, 1, k)
    x = torch.zeros(1, 3, 40, 40, requires_grad=True)
    y = block(x)
    reach = 0
    for o in (18, 19):  # an even and an odd output
        (g,) = torch.autograd.grad(y[0, :, o, o].sum(), x, retain_graph=True)
        rows = g.abs().sum(dim=(0, 1, 3)).nonzero()[:, 0]
        reach = max(reach, o - int(rows.min()), int(rows.max()) - o)
    assert reach == pad  # tight: 3 for Haar and a 3x3 kernel
    if kernel == 3:
        assert pad == 3


@pytest.mark.parametrize("hf_groups", [1, 3])
def test_behind_a_stride_two_stage_it_tiles_like_the_whole_image(hf_groups):
    """In g_a the block follows a downsampling stage, in g_s an upsampling one: tiles then
    start at even positions of the block's input, where the DWT pairs the same samples."""
    torch.manual_seed(2)
    down = nn.Sequential(conv(3, 4), _live(WaveletConv(4, hf_groups=hf_groups)), conv(4, 5))
    up = nn.Sequential(deconv(5, 4), _live(WaveletConv(4, hf_groups=hf_groups), 3), deconv(4, 3))
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        y = down(x)
        assert (run_tiled(down, x, Geometry.of(down), 16) - y).abs().max() < 1e-5
        back = up(y)
        assert (run_tiled(up, y, Geometry.of(up), 3) - back).abs().max() < 1e-5


def test_high_band_groups():
    joint, per_band = WaveletConv(8), WaveletConv(8, hf_groups=3)
    assert joint.hf[0].weight.numel() == 3 * per_band.hf[0].weight.numel()
    with pytest.raises(ValueError, match="hf_groups"):
        WaveletConv(8, hf_groups=2)
