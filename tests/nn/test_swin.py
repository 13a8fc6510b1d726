"""SwinV2 window attention equals dense attention restricted to each position's window (with
the shift, the masked border and the continuous position bias); a residual SwinV2 block and
the feature enhancement start as the identity; the receptive field a block declares holds,
and a chain holding blocks codes the same tiled or whole - while tiles cut off the window
grid would not."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from liccodec.nn.swin import (FeatureEnhancement, ResidualSwinV2Block, SwinV2Layer, log_spaced_offsets,
                              window_merge, window_partition)
from liccodec.tiling import Geometry, run_tiled

from blocks import assert_starts_as_identity, live, receptive_reach


def test_window_partition_round_trips_and_groups_windows():
    x = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).view(2, 8, 12, 3)
    t = window_partition(x, 4)
    assert t.shape == (2, 6, 16, 3)
    assert torch.equal(t[0, 1, 5], x[0, 1, 5])      # window (0, 1), position (1, 1)
    assert torch.equal(t[1, 4, 0], x[1, 4, 4])      # window (1, 1), its first position
    assert torch.equal(window_merge(t, 4, 8, 12), x)


def test_offsets_are_log_spaced():
    t = log_spaced_offsets(8)
    assert t.shape == (15 * 15, 2)
    # the farthest offset, w - 1, maps to log2(9) / log2(8), as in SwinV2
    assert math.isclose(t.abs().max().item(), math.log2(9) / 3, rel_tol=1e-6)
    assert torch.equal(t[0], -t.abs().max().expand(2))
    # the middle of the table is offset (0, 0); an offset of one position is log2(1 + 8/7) / 3
    assert torch.equal(t[7 * 15 + 7], torch.zeros(2))
    assert math.isclose(t[7 * 15 + 8, 1].item(), math.log2(1 + 8 / 7) / 3, rel_tol=1e-6)


def _dense_reference(layer: SwinV2Layer, x: torch.Tensor) -> torch.Tensor:
    """The layer computed without windows: every position attends to all positions of its
    (shifted) window group, by coordinates, over the whole map at once."""
    b, h, wd, c = x.shape
    w, s, att = layer.window, layer.shift, layer.attn
    heads, d = att.heads, c // att.heads
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(wd), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    same = (((ys + s) // w)[:, None] == ((ys + s) // w)[None]) & (((xs + s) // w)[:, None] == ((xs + s) // w)[None])
    # position bias of each pair from the offset table (offsets within a window: |d| < w)
    dy, dx = ys[:, None] - ys[None] + (w - 1), xs[:, None] - xs[None] + (w - 1)
    table = 16 * torch.sigmoid(att.cpb(att.offsets.to(x.dtype)))
    bias = table[(dy.clamp(0, 2 * w - 2) * (2 * w - 1) + dx.clamp(0, 2 * w - 2))].permute(2, 0, 1)
    tok = x.reshape(b, h * wd, c)
    qkv = F.linear(tok, att.qkv.weight, torch.cat([att.q_bias, torch.zeros_like(att.q_bias), att.v_bias]))
    q, k, v = qkv.view(b, h * wd, 3, heads, d).permute(2, 0, 3, 1, 4)
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    logits = logits * torch.exp(att.logit_scale.clamp(max=math.log(100))) + bias
    a = torch.softmax(logits.masked_fill(~same, float("-inf")), -1) @ v
    a = att.proj(a.transpose(1, 2).reshape(b, h * wd, c)).view(b, h, wd, c)
    y = x + layer.norm1(a)
    return y + layer.norm2(layer.mlp(y))


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("hw", [(8, 12), (10, 7), (3, 5)])
def test_window_attention_equals_dense_attention_within_windows(shifted, hw):
    """Regular and shifted windows, maps that are multiples of the window and maps that are
    not (a masked border), and a map smaller than one window: the windows never resize."""
    torch.manual_seed(0)
    layer = SwinV2Layer(8, 2, 4, shifted, mlp_ratio=2.0, cpb_hidden=16).double()
    with torch.no_grad():
        layer.attn.logit_scale.copy_(torch.tensor([[[1.0]], [[3.5]]]))
        layer.attn.q_bias.normal_()
        layer.attn.v_bias.normal_()
    x = torch.randn(2, *hw, 8, dtype=torch.float64)
    assert torch.allclose(layer(x), _dense_reference(layer, x), atol=1e-10)


def test_logit_scale_is_clamped_at_100():
    torch.manual_seed(0)
    layer = SwinV2Layer(8, 2, 4, False, cpb_hidden=16).double()
    x = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        layer.attn.logit_scale.fill_(math.log(100))
        at_limit = layer(x)
        layer.attn.logit_scale.fill_(math.log(1000))
        assert torch.equal(layer(x), at_limit)


def test_a_residual_swin_block_starts_as_the_identity():
    assert_starts_as_identity(ResidualSwinV2Block(8, depth=2, heads=2, window=4, mlp_ratio=2.0, cpb_hidden=16), 8)


def test_the_feature_enhancement_starts_as_the_identity():
    assert_starts_as_identity(FeatureEnhancement(8, width=4), 8)


def test_both_train_in_bf16():
    """Under bf16 autocast a live block gives finite outputs and gradients for every parameter."""
    block = live(ResidualSwinV2Block(8, depth=2, heads=2, window=4, cpb_hidden=16))
    x = torch.randn(2, 8, 12, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x)
    assert torch.isfinite(y).all()
    y.float().pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_declared_receptive_field_holds(depth):
    """The gradient-measured reach never exceeds what the block declares to the tiler, and
    one regular layer reaches exactly the far end of its window."""
    block = live(ResidualSwinV2Block(8, depth=depth, heads=2, window=4, cpb_hidden=16)).double()
    declared = Geometry.of(block).halo
    reach = receptive_reach(block.float(), 8)
    assert reach <= declared
    assert Geometry.of(block).align == 4
    layer = SwinV2Layer(8, 2, 4, False, cpb_hidden=16)
    # outputs 18, 19 sit in window [16, 20): 19 reads 16, three away
    assert receptive_reach(_NCHW(layer), 8) == 3 == layer.axis_ops()[0][3]


class _NCHW(nn.Module):
    """A layer on (b, H, W, c) applied to an NCHW map."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _chain() -> nn.Sequential:
    """Analysis-like: a stride-2 convolution, a block behind it, another stride-2 convolution."""
    torch.manual_seed(3)
    return live(nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), ResidualSwinV2Block(8, 2, 2, 4, cpb_hidden=16),
                              nn.Conv2d(8, 8, 3, 2, 1), ResidualSwinV2Block(8, 2, 2, 4, cpb_hidden=16),
                              FeatureEnhancement(8, 4))).eval()


def test_a_chain_with_blocks_codes_the_same_tiled_or_whole():
    chain = _chain()
    geo = Geometry.of(chain)
    # the blocks' windows repeat every 4 of their inputs: 8 and 16 image pixels; tiles start on 16
    assert (geo.down, geo.align, geo.grid) == (4, 16, 16)
    x = torch.rand(1, 3, 192, 160)
    core = 32
    assert geo.halo + core < 160  # tiles really are smaller than the image
    with torch.no_grad():
        whole = chain(x)
        tiled = run_tiled(chain, x, geo, core)
    assert (tiled - whole).abs().max() < 1e-5


def test_windows_off_the_grid_would_not_match():
    """The teeth of the test above: a crop that starts 4 pixels off the grid (the first block's
    windows shifted by 2 positions) changes outputs far from any border, one on the grid
    does not."""
    chain = _chain()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        whole = chain(x)
        on = chain(x[..., 64:, :])      # starts on the grid
        off = chain(x[..., 4:, :])      # starts off it
    assert (on[..., 12:20, 8:24] - whole[..., 28:36, 8:24]).abs().max() < 1e-5
    assert (off[..., 12:20, 8:24] - whole[..., 13:21, 8:24]).abs().max() > 1e-3
