"""Residual SwinV2 codec (arch ``swin``): the blocks are extra entries around charm's layers,
a new model is charm exactly (the blocks start as the identity), a warm start from a charm
model gives that model's outputs and rate, the transforms holding blocks tile exactly, and the
blocks train."""
import pytest
import torch

from liccodec.models import get_arch
from liccodec.nn.swin import FeatureEnhancement, ResidualSwinV2Block
from liccodec.tiling import Geometry, TilePolicy

from charm_zoo import (CHARM_MSE, assert_charm_plus, assert_starts_as, image, needs_charm_mse, recipe_config,
                       shapes, warm)

BLOCKS = ("g_a.swin", "g_a.enh", "g_s.swin", "g_s.enh")


def test_blocks_are_extra_entries_around_charms_layers(tiny_builder):
    _, cfgs = tiny_builder
    build = lambda **kw: get_arch("swin").build(**{**cfgs["charm"], **kw})  # noqa: E731
    model = build()  # the defaults: a block behind the 1/8 stages, the enhancement at both ends
    assert [n for n, _ in model.g_a.named_children()] == ["enh", "0", "1", "2", "3", "4", "5", "swin8", "6"]
    assert [n for n, _ in model.g_s.named_children()] == ["0", "1", "swin8", "2", "3", "4", "5", "6", "enh"]
    assert_charm_plus(model, cfgs["charm"], BLOCKS)
    both = get_arch("swin").build(**cfgs["swin"])  # the tiny config: blocks at 1/4 and 1/8
    assert [n for n, _ in both.g_a.named_children()] == ["enh", "0", "1", "2", "3", "swin4", "4", "5", "swin8", "6"]
    assert [n for n, _ in both.g_s.named_children()] == ["0", "1", "swin8", "2", "3", "swin4", "4", "5", "6", "enh"]
    assert sum(isinstance(m, ResidualSwinV2Block) for m in both.modules()) == 4
    assert sum(isinstance(m, FeatureEnhancement) for m in both.modules()) == 2
    assert both.y_stride == 16 and both.downsampling == 64
    assert shapes(build(swin_ga=[], swin_gs=[], enh=False)) == shapes(get_arch("charm").build(**cfgs["charm"]))
    with pytest.raises(ValueError, match="swin_gs"):
        build(swin_gs=[16])


def test_a_new_model_with_charms_weights_is_that_charm(tiny_builder):
    """Zero start: charm's state loaded by name into a fresh swin (blocks untouched) gives
    charm's x_hat and likelihoods bit for bit, on two image sizes."""
    build_tiny, cfgs = tiny_builder
    charm = build_tiny(arch="charm")
    model = get_arch("swin").build(**cfgs["swin"]).eval()
    missing, unexpected = model.load_state_dict(charm.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(BLOCKS) for k in missing)
    for x in (image(64, 64), image(128, 192, seed=2)):
        level = torch.tensor([1.4])
        with torch.no_grad():
            a, b = charm(x, level), model(x, level)
        assert torch.equal(a.x_hat, b.x_hat)
        for k in a.likelihoods:
            assert torch.equal(a.likelihoods[k], b.likelihoods[k]), k


def test_warm_started_from_charm_it_is_that_charm(charm_file):
    charm, _ = warm("charm", charm_file)
    model, fresh = warm("swin", charm_file)
    assert any(k.startswith("g_a.swin4") for k in fresh) and any(k.startswith("g_s.enh") for k in fresh)
    assert_starts_as(charm, model, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))


@needs_charm_mse
def test_warm_started_from_charm_mse_it_is_charm_mse():
    """charm.mse's config (from the manifest) with the default blocks gives charm.mse's x_hat
    and rate, bit for bit, on a small image."""
    from liccodec.weights import get_spec

    cfg = dict(get_spec("charm.mse").config)
    charm, _ = warm("charm", CHARM_MSE, **cfg)
    model, fresh = warm("swin", CHARM_MSE, **cfg)
    assert any(k.startswith("g_a.swin8") for k in fresh) and any(k.startswith("g_s.swin8") for k in fresh)
    assert_starts_as(charm, model, fresh, BLOCKS, image(64, 128), torch.tensor([2.5]))


def test_the_transforms_tile_exactly_with_tiles_smaller_than_the_image(tiny_builder, tmp_path):
    """The contract's image is about one tile once the blocks' halo is added; here the tiles
    are much smaller than the image, and tiled decoding and analysis give whole-image results."""
    from safetensors.torch import load_file

    from liccodec.train.export import export_module

    build_tiny, cfgs = tiny_builder
    path = export_module(build_tiny(arch="swin"), "swin", cfgs["swin"], "swin.tiny", tmp_path)
    net = get_arch("swin").build(inference=True, **cfgs["swin"])
    net.load_tensors(load_file(str(path)))
    net.eval()
    x = image(256, 320, seed=4)
    small, never = TilePolicy(threshold=0, tile=64), TilePolicy.never()
    ga, gs = Geometry.of(net.g_a), Geometry.of(net.g_s)
    assert ga.align == 32 and ga.halo + 64 < 256          # windows of 4 at 1/8 repeat every 32 pixels
    assert gs.halo + small.core(net.y_stride) < 256 // 16
    with torch.no_grad():
        assert (net.analysis(x, tiles=small) - net.analysis(x, tiles=never)).abs().max() < 1e-4
    streams = net.compress(x, 2000, tiles=never)
    whole = net.decompress(streams, x.shape[2:], 2000, tiles=never)
    tiled = net.decompress(streams, x.shape[2:], 2000, tiles=small)
    assert (tiled - whole).abs().max() < 1e-4


def test_gradients_reach_every_block_parameter(tiny_builder):
    """The zero output layers get a gradient at once; after one step every block parameter does."""
    _, cfgs = tiny_builder
    model = get_arch("swin").build(**cfgs["swin"]).train()
    new = {k: p for k, p in model.named_parameters() if k.startswith(BLOCKS)}
    x, level = image(), torch.tensor([1.0])

    def step():
        model.zero_grad(set_to_none=True)
        (model(x, level).x_hat - x).pow(2).mean().backward()

    step()
    assert all(new[k].grad.abs().sum() > 0 for k in new if ".out." in k)
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in new.values())


def test_the_recipe_starts_from_charm_mse_with_its_lambdas():
    cfg = recipe_config("swin.toml", "swin")
    assert list(cfg.swin_ga) == [8] and list(cfg.swin_gs) == [8] and cfg.enh


def test_the_recipe_trains_as_its_control():
    """charm.ctl is the equal-budget control: the same [train] table but for the output folder."""
    import dataclasses

    from charm_zoo import REPO
    from liccodec.train.config import Recipe

    own, ctl = (dataclasses.asdict(Recipe.load(REPO / "docs" / r).train) for r in ("swin.toml", "charm.ctl.toml"))
    assert own.pop("out") != ctl.pop("out") and own == ctl


@pytest.mark.slow
@needs_charm_mse
def test_the_recipes_model_starts_at_charm_mse():
    from charm_zoo import recipe_start

    charm, model, fresh = recipe_start("swin.toml")
    assert_starts_as(charm, model, fresh, BLOCKS, image(64, 128, seed=2), torch.tensor([4.0]))
