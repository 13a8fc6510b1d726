"""PO-DKIC (arch ``podkic``): charm plus dynamic-kernel residual block groups; a warm start
from a charm model is exactly that model, and tiled coding stays exact once the groups are
no longer the identity."""
import json

import pytest
import torch

from liccodec.models import get_arch
from liccodec.nn.dynamic import DynamicResidualGroup, RoutedSequential
from liccodec.tiling import TilePolicy

from charm_zoo import CHARM_MSE, assert_charm_plus, assert_starts_as, image, needs_charm_mse, shapes, warm

BLOCKS = ("g_a.dyn", "g_s.dyn")


def test_groups_are_extra_entries_around_charms_layers(tiny_builder):
    _, cfgs = tiny_builder
    model = get_arch("podkic").build(**cfgs["podkic"])
    assert isinstance(model.g_a, RoutedSequential) and isinstance(model.g_s, RoutedSequential)
    assert [n for n, _ in model.g_s.named_children()] == ["dyn16", "0", "1", "dyn8", "2", "3", "4", "5", "6"]
    assert [n for n, _ in model.g_a.named_children()] == ["0", "1", "2", "3", "dyn4", "4", "5", "6"]
    assert_charm_plus(model, cfgs["charm"], BLOCKS)
    plain = get_arch("podkic").build(**{**cfgs["podkic"], "dyn_gs_at": [], "dyn_ga_at": []})
    assert shapes(plain) == shapes(get_arch("charm").build(**cfgs["charm"]))
    with pytest.raises(ValueError, match="dyn_gs_at"):
        get_arch("podkic").build(**{**cfgs["podkic"], "dyn_gs_at": [32]})


def test_default_puts_one_group_behind_g_s_first_stage():
    cfg = get_arch("podkic").config()
    assert list(cfg.dyn_gs_at) == [8] and list(cfg.dyn_ga_at) == []


def test_warm_started_from_a_charm_model_it_is_that_model(charm_file):
    charm, _ = warm("charm", charm_file)
    model, fresh = warm("podkic", charm_file)
    assert_starts_as(charm, model, fresh, BLOCKS, image(128, 128), torch.tensor([1.3]))


def test_tiled_decoding_is_exact_with_trained_like_groups(tiny_builder):
    """The groups read the whole image's descriptor while tiles run (non-identity groups:
    the contract test alone would see only fresh, identity groups)."""
    build_tiny, _ = tiny_builder
    net = build_tiny(arch="podkic")
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, DynamicResidualGroup):
                for p in (m.out.weight, m.router.net[2].weight):
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    coder = get_arch("podkic").build(inference=True, **get_arch("podkic").tiny)
    coder.load_tensors(net.export_tensors())
    coder.eval()
    x = image(192, 256, seed=4)
    small, never = TilePolicy(threshold=0, tile=64), TilePolicy.never()
    streams = coder.compress(x, 2350, tiles=never)
    whole = coder.decompress(streams, x.shape[2:], 2350, tiles=never)
    tiled = coder.decompress(streams, x.shape[2:], 2350, tiles=small)
    assert (tiled - whole).abs().max() < 1e-4
    y_whole = coder.analysis(x, tiles=never)
    y_tiled = coder.analysis(x, tiles=small)
    assert (y_tiled - y_whole).abs().max() < 1e-3


@needs_charm_mse
def test_warm_started_from_charm_mse_it_decodes_as_charm_mse():
    """Step 0 of the recipe: the real-size model from charm.mse gives charm.mse's x_hat."""
    from safetensors import safe_open

    from liccodec.train.warmstart import warm_start

    with safe_open(str(CHARM_MSE), "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    charm = get_arch("charm").build(**cfg)
    model = get_arch("podkic").build(**cfg)
    warm_start(charm, CHARM_MSE)
    warm_start(model, CHARM_MSE)
    x, level = image(seed=2), torch.tensor([2.5])
    with torch.no_grad():
        a, b = charm.eval()(x, level), model.eval()(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    assert torch.equal(a.likelihoods["y"], b.likelihoods["y"])
