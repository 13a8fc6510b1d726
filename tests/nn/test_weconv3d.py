"""The 3DM-WeConv block: an exact identity when built, its subbands are the ones it says
(a 3D multi-level decomposition, each band its own convolution and kernel), its declared
window and period are its true ones, and behind the transforms' stages it tiles like the
whole image, on the coarser grid its period asks for."""
import pytest
import torch
from torch import nn

from liccodec.nn import conv, deconv
from liccodec.nn.weconv3d import WaveletConv3D
from liccodec.tiling import Geometry, run_tiled

from blocks import assert_starts_as_identity


def _live(block: WaveletConv3D, seed: int = 0) -> WaveletConv3D:
    """Random weights everywhere, the zero-started last layer included."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, 0.3)
                m.bias.normal_(0, 0.1)
    return block


def test_a_new_block_is_exactly_the_identity():
    """The last 1x1 starts at zero, so inserted into trained transforms it changes nothing,
    in fp32 and under bf16 autocast alike (where the lifting itself runs in fp32); and it
    trains: the zero layer gets a gradient at once."""
    assert_starts_as_identity(WaveletConv3D(8), 8)


def test_each_subband_has_its_own_convolution_and_kernel():
    """Channel DWT then L spatial levels: the low band (low along all three axes) gets the
    large kernel, everything else the small one; without the channel DWT one group of C
    channels, the 2D multi-level block."""
    b = WaveletConv3D(8, levels=2, kernels=(3, 1))
    assert [m[0].weight.shape for m in b.low] == [(4, 4, 3, 3), (4, 4, 1, 1)]
    assert [[m[0].weight.shape for m in lv] for lv in b.high] == [[(12, 12, 1, 1)] * 2] * 2
    flat = WaveletConv3D(8, levels=3, kernels=(5, 3), channel_dwt=False)
    assert [m[0].weight.shape for m in flat.low] == [(8, 8, 5, 5)]
    assert [[m[0].weight.shape for m in lv] for lv in flat.high] == [[(24, 24, 3, 3)] * 3]
    for bad in (dict(channels=7), dict(kernels=(2, 1)), dict(levels=0), dict(kernels=(3,))):
        with pytest.raises(ValueError):
            WaveletConv3D(**{"channels": 8, **bad})


def test_the_low_band_convolution_sees_only_the_low_band():
    """Zero every convolution but the low band's: the block's residual is then a function of
    the input's LLL band alone, so an input with no energy there (a checkerboard along the
    channels and both spatial axes is pure HHH for Haar) leaves the output untouched."""
    b = _live(WaveletConv3D(4, wavelet="haar", levels=1), 3)
    with torch.no_grad():
        b.inp.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        b.inp.bias.zero_()
        for h in (b.low[1], *b.high[0], *b.high[1]):  # GDN(0) = 0: these bands give zeros
            h[0].weight.zero_()
            h[0].bias.zero_()
        b.low[0][0].bias.zero_()
        b.out.bias.zero_()
        c, y, x = torch.meshgrid(torch.arange(4), torch.arange(8), torch.arange(8), indexing="ij")
        hhh = ((-1.0) ** (c + y + x)).unsqueeze(0)
        const = torch.ones(1, 4, 8, 8)
        assert torch.allclose(b(hhh), hhh, atol=1e-6)
        assert not torch.allclose(b(const), const, atol=1e-3)


@pytest.mark.parametrize("wavelet, levels", [("haar", 1), ("legall53", 2), ("cdf97", 2), ("legall53", 3)])
def test_the_declared_window_and_period_are_the_blocks(wavelet, levels):
    """The declared window covers every input an output reads, and the block is periodic with
    the declared period 2**L (shift the input by it and the output shifts along), not with
    half of it."""
    block = _live(WaveletConv3D(4, wavelet=wavelet, levels=levels)).double()
    (op,) = block.axis_ops()
    transposed, k, stride, pad, period = op
    assert (transposed, stride, k, period) == (False, 1, 2 * pad + 1, 2**levels)
    n = period * (8 + -(-4 * pad // period))
    x = torch.zeros(1, 4, n, 16, dtype=torch.float64, requires_grad=True)
    y = block(x)
    reach = 0
    for o in range(n // 2, n // 2 + period):
        (g,) = torch.autograd.grad(y[0, :, o, 8].sum(), x, retain_graph=True)
        rows = g.abs().sum(dim=(0, 1, 3)).nonzero()[:, 0]
        reach = max(reach, o - int(rows.min()), int(rows.max()) - o)
    assert 0 < reach <= pad
    with torch.no_grad():
        x = torch.randn(1, 4, n, 16, dtype=torch.float64)
        inner = slice(pad + period, n - pad - period)
        for shift, same in ((period, True), (period // 2, False)):
            moved = block(torch.roll(x, shift, dims=2))
            diff = (torch.roll(block(x), shift, dims=2) - moved)[..., inner, :].abs().max()
            assert (diff < 1e-10) == same, (shift, diff)


@pytest.mark.parametrize("channel_dwt", [True, False])
def test_behind_the_stages_it_tiles_like_the_whole_image(channel_dwt):
    """Two levels behind a stride-8 stage: the stride grid alone would start tiles at odd
    multiples of 2 of the block's input; its period moves g_a's grid to 32 and g_s's to 2."""
    torch.manual_seed(2)
    block = lambda seed: _live(WaveletConv3D(4, levels=2, channel_dwt=channel_dwt), seed)  # noqa: E731
    down = nn.Sequential(conv(3, 4), conv(4, 4), conv(4, 4), block(0), conv(4, 5))
    up = nn.Sequential(deconv(5, 4), block(1), deconv(4, 4), deconv(4, 4), deconv(4, 3))
    g_down, g_up = Geometry.of(down), Geometry.of(up)
    assert (g_down.down, g_down.align, g_down.grid) == (16, 32, 32)
    assert (g_up.up, g_up.align, g_up.grid) == (16, 2, 2)
    x = torch.rand(1, 3, 448, 64, dtype=torch.float64)  # taller than the halo: inner tiles
    down, up = down.double(), up.double()
    with torch.no_grad():
        y = down(x)
        for core in (16, 32, 48):
            assert (run_tiled(down, x, g_down, core) - y).abs().max() < 1e-10, core
        with pytest.raises(ValueError, match="divisible"):  # on the stride grid alone: tiles cut a period
            run_tiled(down, x, Geometry(1, 16, g_down.halo + 16), 16)
        back = up(y)
        for core in (1, 2, 3):
            assert (run_tiled(up, y, g_up, core) - back).abs().max() < 1e-10, core
