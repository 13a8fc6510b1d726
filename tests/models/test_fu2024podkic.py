"""PO-DKIC (arch ``podkic``): charm plus dynamic-kernel residual block groups; a warm start
from a charm model is exactly that model, and tiled coding stays exact once the groups are
no longer the identity."""
import json
from pathlib import Path

import pytest
import torch

from liccodec.models import get_arch
from liccodec.nn.dynamic import DynamicResidualGroup, RoutedSequential
from liccodec.tiling import TilePolicy

REPO = Path(__file__).resolve().parents[2]
CHARM_MSE = REPO / "models" / "charm.mse.safetensors"


def _image(h: int = 128, w: int = 128, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_groups_are_extra_entries_around_charms_layers(tiny_builder):
    _, cfgs = tiny_builder
    charm = _shapes(get_arch("charm").build(**cfgs["charm"]))
    model = get_arch("podkic").build(**cfgs["podkic"])
    assert isinstance(model.g_a, RoutedSequential) and isinstance(model.g_s, RoutedSequential)
    assert [n for n, _ in model.g_s.named_children()] == ["dyn16", "0", "1", "dyn8", "2", "3", "4", "5", "6"]
    assert [n for n, _ in model.g_a.named_children()] == ["0", "1", "2", "3", "dyn4", "4", "5", "6"]
    extra = set(_shapes(model)) - set(charm)
    assert extra and all(k.startswith(("g_a.dyn", "g_s.dyn")) for k in extra)
    assert {k: v for k, v in _shapes(model).items() if k in charm} == charm
    plain = get_arch("podkic").build(**{**cfgs["podkic"], "dyn_gs_at": [], "dyn_ga_at": []})
    assert _shapes(plain) == charm
    with pytest.raises(ValueError, match="dyn_gs_at"):
        get_arch("podkic").build(**{**cfgs["podkic"], "dyn_gs_at": [32]})


def test_default_puts_one_group_behind_g_s_first_stage():
    cfg = get_arch("podkic").config()
    assert list(cfg.dyn_gs_at) == [8] and list(cfg.dyn_ga_at) == []


@pytest.fixture()
def charm_file(tiny_builder, tmp_path):
    from liccodec.train.export import export_module

    build_tiny, cfgs = tiny_builder
    return export_module(build_tiny(arch="charm"), "charm", cfgs["charm"], "charm.tiny", tmp_path)


def test_warm_started_from_a_charm_model_it_is_that_model(charm_file):
    from liccodec.train.warmstart import warm_start

    charm = get_arch("charm").build(**get_arch("charm").tiny)
    warm_start(charm, charm_file)
    model = get_arch("podkic").build(**get_arch("podkic").tiny)
    fresh = warm_start(model, charm_file)
    params = dict(model.named_parameters())
    assert all(k.startswith(("g_a.dyn", "g_s.dyn"))
               or (k.startswith("latent.entropy_bottleneck.") and k not in params) for k in fresh), fresh
    x, level = _image(), torch.tensor([1.3])
    with torch.no_grad():
        a, b = charm.eval()(x, level), model.eval()(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    for k in a.likelihoods:
        assert torch.equal(a.likelihoods[k], b.likelihoods[k])


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
    x = _image(192, 256, seed=4)
    small, never = TilePolicy(threshold=0, tile=64), TilePolicy.never()
    streams = coder.compress(x, 2350, tiles=never)
    whole = coder.decompress(streams, x.shape[2:], 2350, tiles=never)
    tiled = coder.decompress(streams, x.shape[2:], 2350, tiles=small)
    assert (tiled - whole).abs().max() < 1e-4
    y_whole = coder.analysis(x, tiles=never)
    y_tiled = coder.analysis(x, tiles=small)
    assert (y_tiled - y_whole).abs().max() < 1e-3


@pytest.mark.skipif(not CHARM_MSE.exists(), reason="models/charm.mse.safetensors not present")
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
    x, level = _image(64, 64, seed=2), torch.tensor([2.5])
    with torch.no_grad():
        a, b = charm.eval()(x, level), model.eval()(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    assert torch.equal(a.likelihoods["y"], b.likelihoods["y"])
