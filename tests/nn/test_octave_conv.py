"""Octave transforms: the HR path is charm's transform exactly while the LR -> HR exchanges
are zero, the packing is lossless, and the declared tiling window covers every path through
the two resolutions (so tiles give the whole image's outputs)."""
import itertools

import pytest
import torch

from liccodec.models import get_arch
from liccodec.nn.octave import OctaveAnalysis, OctaveSynthesis, pack, unpack
from liccodec.tiling import Geometry, _AxisOp, run_tiled

CONV, DECONV = _AxisOp(False, 5, 2, 2), _AxisOp(True, 5, 2, 2)
POOL, UP = _AxisOp(False, 2, 2, 0), _AxisOp(True, 2, 2, 0)   # 2x2 average / nearest 2x: windows of 2


def _charm(seed: int = 0):
    torch.manual_seed(seed)
    return get_arch("msh").build(N=16, M=24, lambdas=[0.01, 0.02])


def _transforms(seed: int = 0, live: bool = True) -> tuple[object, OctaveAnalysis, OctaveSynthesis]:
    """A small charm and octave transforms around copies of its g_a and g_s; ``live`` wakes
    the zero-started LR -> HR exchanges."""
    import copy

    charm = _charm(seed)
    g_a = OctaveAnalysis(copy.deepcopy(charm.g_a), 8, 12, low_init=1.0)
    g_s = OctaveSynthesis(copy.deepcopy(charm.g_s), 24, 8, 12)
    if live:
        with torch.no_grad():
            for side in (*g_a.low, *g_s.low):
                if side.lh is not None:
                    side.lh.weight.normal_(0, 0.05)
                    side.lh.bias.normal_(0, 0.05)
    return charm, g_a, g_s


def test_pack_and_unpack_are_inverse():
    y, y_low = torch.randn(2, 5, 6, 8), torch.randn(2, 3, 3, 4)
    packed = pack(y, y_low)
    assert packed.shape == (2, 23, 3, 4)
    back, back_low = unpack(packed, 5)
    assert torch.equal(back, y) and torch.equal(back_low, y_low)


def test_the_hr_path_is_charms_transform_until_the_exchanges_learn():
    """Built around charm's layers, the analysis' HR latent is charm's y and the synthesis
    gives charm's picture whatever the LR latent holds, bit for bit (fp32 and bf16); the
    LR latent is not zero (the HR -> LR exchanges compute from the start), and the zero
    exchanges get gradients at once."""
    charm, g_a, g_s = _transforms(live=False)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        y, y_low = unpack(g_a(x), 24)
        assert torch.equal(y, charm.g_a(x)) and y_low.shape == (1, 12, 2, 3) and y_low.abs().sum() > 0
        noise = torch.randn_like(y_low) * 5
        assert torch.equal(g_s(pack(y, noise)), charm.g_s(y))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(unpack(g_a(x), 24)[0], charm.g_a(x))
            assert torch.equal(g_s(pack(y, noise)), charm.g_s(y))
    (g_s(g_a(x)) - x).pow(2).sum().backward()
    for side in (*g_a.low[1:], *g_s.low):
        assert side.lh.weight.grad.abs().sum() > 0


def _analysis_paths():
    """Every path from the image to the packed latent: per layer HR->HR, LR->HR (convolution,
    upsampling), HR->LR (pooling, convolution) or LR->LR; the HR latent is packed by 2x2 blocks."""
    step = {("H", "H"): [CONV], ("L", "H"): [CONV, UP], ("H", "L"): [POOL, CONV], ("L", "L"): [CONV]}
    for states in itertools.product("HL", repeat=4):
        s = ["H", *states]
        ops = [op for k in range(4) for op in step[s[k], s[k + 1]]]
        yield ops + ([POOL] if s[-1] == "H" else [])


def _synthesis_paths():
    step = {("H", "H"): [DECONV], ("L", "H"): [DECONV, UP], ("H", "L"): [POOL, DECONV], ("L", "L"): [DECONV]}
    for states in itertools.product("HL", repeat=4):
        s = [*states, "H"]
        ops = [op for k in range(4) for op in step[s[k], s[k + 1]]]
        yield ([UP] if s[0] == "H" else []) + ops


def _reach(ops, lo: int, hi: int) -> tuple[int, int]:
    for op in reversed(ops):
        lo, hi = op.inputs_for(lo, hi)
    return lo, hi


def test_the_declared_window_covers_every_path():
    """Geometry.of's halo (from the declared axis_ops) is at least the farthest input any
    path through the two resolutions reads, for a block of one output position."""
    _, g_a, g_s = _transforms()
    ga, gs = Geometry.of(g_a), Geometry.of(g_s)
    assert (ga.down, gs.up) == (32, 32)
    p = 1000  # one packed-latent position: image pixels 32p .. 32p + 31
    need_a = max(max(32 * p - lo, hi - (32 * p + 31)) for lo, hi in (_reach(o, p, p) for o in _analysis_paths()))
    need_s = max(max(p - lo, hi - p) for lo, hi in (_reach(o, 32 * p, 32 * p + 31) for o in _synthesis_paths()))
    assert ga.halo >= need_a and gs.halo >= need_s, (ga.halo, need_a, gs.halo, need_s)
    assert len(list(_analysis_paths())) == len(list(_synthesis_paths())) == 16


@pytest.mark.parametrize("core", [32, 64])
def test_tiles_give_the_whole_images_outputs(core):
    """With every exchange live, both transforms computed tile by tile (cores of one and two
    packed positions) equal the whole-image result up to float rounding."""
    _, g_a, g_s = _transforms(seed=3)
    x = torch.rand(1, 3, 192, 256)
    with torch.no_grad():
        y = g_a(x)
        assert (run_tiled(g_a, x, Geometry.of(g_a), core) - y).abs().max() < 1e-4
        x_hat = g_s(y)
        assert (run_tiled(g_s, y, Geometry.of(g_s), core // 32) - x_hat).abs().max() < 1e-4
