"""WeConvene (arch ``weconv``): each of the paper's two parts is one flag, and a warm start
from a shipped charm model gives charm's transforms exactly (the whole charm model with the
wavelet-domain entropy model switched off)."""
import pytest
import torch

from liccodec.latent.channelwise import ChannelConditional
from liccodec.latent.wavelet import WaveletChannel
from liccodec.models import get_arch
from liccodec.nn.weconv import WaveletConv

from charm_zoo import (Z_PRIOR, assert_charm_plus, assert_starts_as, image, needs_charm_mse, recipe_config,
                       recipe_start, shapes, warm)

BLOCKS = ("g_a.weconv", "g_s.weconv")


def test_each_part_is_one_flag(tiny_builder):
    """weconv off and wecharm off is charm, name for name and shape for shape; weconv adds
    only its blocks; wecharm swaps the slice networks for the band networks."""
    _, cfgs = tiny_builder
    charm = shapes(get_arch("charm").build(**cfgs["charm"]))
    build = lambda **flags: get_arch("weconv").build(**{**cfgs["weconv"], **flags})  # noqa: E731
    assert shapes(build(weconv=False, wecharm=False)) == charm
    blocks = build(wecharm=False)
    assert_charm_plus(blocks, cfgs["charm"], BLOCKS)
    assert isinstance(blocks.latent, ChannelConditional)
    assert sum(isinstance(m, WaveletConv) for m in blocks.modules()) == 4
    wave = build(weconv=False)
    assert isinstance(wave.latent, WaveletChannel)
    assert all(k.startswith(("latent.lf.", "latent.hf.", "latent.wlrp."))
               for k in set(shapes(wave)) - set(charm))
    with pytest.raises(ValueError, match="weconv_at"):
        build(weconv_at=[16])


def test_blocks_sit_behind_the_inner_stages(tiny_builder):
    _, cfgs = tiny_builder
    model = get_arch("weconv").build(**cfgs["weconv"])
    assert [n for n, _ in model.g_a.named_children()] == ["0", "1", "2", "3", "weconv4", "4", "5", "weconv8", "6"]
    assert [n for n, _ in model.g_s.named_children()] == ["0", "1", "weconv8", "2", "3", "weconv4", "4", "5", "6"]
    assert model.y_stride == 16 and model.downsampling == 64


def test_warm_started_from_charm_without_wecharm_it_is_that_charm(charm_file):
    """Step 0 of ``init = charm``: the WeConv blocks start at zero, so every output, the rate
    estimate included, is the charm model's."""
    charm, _ = warm("charm", charm_file)
    weconv, fresh = warm("weconv", charm_file, **get_arch("weconv").tiny, wecharm=False)
    assert_starts_as(charm, weconv, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))


def test_warm_started_from_charm_with_wecharm_the_transforms_are_charms(charm_file):
    """With WeChARM the transforms, gains, hyperprior and z prior are charm's; only the band
    networks (zero corrections) and the blocks start fresh, and z costs what it cost."""
    charm, _ = warm("charm", charm_file)
    weconv, fresh = warm("weconv", charm_file)
    params = dict(weconv.named_parameters())
    assert all(k.startswith((*BLOCKS, "latent.lf.", "latent.hf.", "latent.wlrp."))
               or (k.startswith(Z_PRIOR) and k not in params) for k in fresh), fresh
    x, level = image(128, 128), torch.tensor([1.3])
    charm.eval()
    weconv.eval()
    with torch.no_grad():
        y = charm.g_a(x)
        assert torch.equal(weconv.g_a(x), y)
        assert torch.equal(weconv.g_s(y), charm.g_s(y))
        a, b = charm(x, level), weconv(x, level)
    assert torch.equal(a.likelihoods["z"], b.likelihoods["z"])


def test_the_recipe_starts_from_charm_mse_with_its_lambdas():
    cfg = recipe_config("weconv.toml", "weconv")
    assert cfg.weconv and cfg.wecharm


@pytest.mark.slow
@needs_charm_mse
def test_the_real_size_model_starts_at_charm_mse():
    """The recipe's model warm-started from charm.mse: its transforms are charm.mse's."""
    charm, weconv, _ = recipe_start("weconv.toml")
    x = image(128, 128, seed=2)
    with torch.no_grad():
        y = charm.eval().g_a(x)
        assert torch.equal(weconv.eval().g_a(x), y)
        assert torch.equal(weconv.g_s(y), charm.g_s(y))
