"""ICISP transforms (arch ``icisp``): the blocks sit where the config says, a warm start from a
charm model is exactly that model, and the blocks train behind a frozen encoder."""
import pytest
import torch

from liccodec.models import get_arch
from liccodec.nn.fdm import FDM
from liccodec.nn.vss import EVSS

from charm_zoo import CHARM_MSE, assert_charm_plus, assert_starts_as, image, needs_charm_mse, shapes, warm

BLOCKS = ("g_a.evss", "g_a.fdm", "g_s.evss", "g_s.fdm")


def test_blocks_are_extra_entries_around_charms_layers(tiny_builder):
    _, cfgs = tiny_builder
    build = lambda **kw: get_arch("icisp").build(**{**cfgs["charm"], **kw})  # noqa: E731
    model = build()  # the defaults: g_s only, after the 1/8 stage
    assert [n for n, _ in model.g_a.named_children()] == [str(i) for i in range(7)]
    assert [n for n, _ in model.g_s.named_children()] == ["0", "1", "evss8", "fdm8", "2", "3", "4", "5", "6"]
    assert [n for n, _ in build(evss_gs=[8, 4]).g_s.named_children()] == \
        ["0", "1", "evss8", "fdm8", "2", "3", "evss4", "fdm4", "4", "5", "6"]
    assert_charm_plus(model, cfgs["charm"], BLOCKS)
    assert shapes(build(evss_gs=[])) == shapes(get_arch("charm").build(**cfgs["charm"]))
    both = build(evss_ga=[4, 8], evss_gs=[8], fdm=False)
    assert [n for n, _ in both.g_a.named_children()] == ["0", "1", "2", "3", "evss4", "4", "5", "evss8", "6"]
    assert sum(isinstance(m, EVSS) for m in both.modules()) == 3
    assert not any(isinstance(m, FDM) for m in both.modules())
    assert both.y_stride == 16 and both.downsampling == 64
    with pytest.raises(ValueError, match="evss_gs"):
        build(evss_gs=[16])


def test_warm_started_from_charm_it_is_that_charm(charm_file):
    """Blocks in g_a and g_s, all zero-start: every output and the rate are charm's."""
    tiny = get_arch("icisp").tiny
    charm, _ = warm("charm", charm_file)
    icisp, fresh = warm("icisp", charm_file)
    assert list(tiny["evss_ga"]) and any(k.startswith("g_a.evss") for k in fresh)
    assert_starts_as(charm, icisp, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))


@needs_charm_mse
def test_warm_started_from_charm_mse_it_is_charm_mse():
    """charm.mse's config (from the manifest) with blocks in g_s after the 1/8 and 1/4 stages
    gives charm.mse's x_hat and rate, bit for bit, on a small image."""
    from liccodec.weights import get_spec

    cfg = dict(get_spec("charm.mse").config)
    charm, _ = warm("charm", CHARM_MSE, **cfg)
    icisp, fresh = warm("icisp", CHARM_MSE, **cfg, evss_gs=[8, 4])
    assert any(k.startswith("g_s.evss4") for k in fresh) and not any(k.startswith("g_a.") for k in fresh)
    assert_starts_as(charm, icisp, fresh, BLOCKS, image(64, 128), torch.tensor([2.5]))


def test_gradients_reach_the_blocks_behind_a_frozen_encoder(tiny_builder):
    """One step of the perceptual recipe's shape: g_a and the entropy model frozen, g_s
    trained. The zero output convolutions get a gradient at once; after one step every
    block parameter does."""
    _, cfgs = tiny_builder
    model = get_arch("icisp").build(**cfgs["charm"]).train()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("g_s."))
    new = {k: p for k, p in model.named_parameters() if k.startswith(BLOCKS)}
    assert new and all(k.startswith(("g_s.evss", "g_s.fdm")) for k in new)
    x, level = image(), torch.tensor([1.0])

    def step():
        model.zero_grad(set_to_none=True)
        (model(x, level).x_hat - x).pow(2).mean().backward()

    step()
    assert all(p.grad is not None for p in new.values())
    assert all(new[k].grad.abs().sum() > 0 for k in new if k.endswith(("out.weight", "out.bias")))
    assert all(p.grad is None for k, p in model.named_parameters() if k.startswith("g_a."))
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    step()
    assert all(p.grad.abs().sum() > 0 for p in new.values())
