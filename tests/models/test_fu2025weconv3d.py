"""3DM-WeConvene (arch ``weconv3d``): each of the paper's claims is one flag (the blocks, their
third axis, the 3D entropy model, its low-band-first order), the blocks sit where they say,
a warm start from a shipped charm model gives charm's transforms exactly (the whole charm
model with charm's entropy model), and the recipe starts from charm.mse. The architecture
contract (tests/models/test_contract.py) covers coding, tiling and export through the registry."""
import pytest
import torch

from liccodec.latent.channelwise import ChannelConditional
from liccodec.latent.wavelet import WaveletChannel
from liccodec.latent.wavelet3d import Wavelet3DChannel
from liccodec.models import get_arch
from liccodec.nn.weconv3d import WaveletConv3D
from liccodec.train.config import Recipe

from charm_zoo import (REPO, Z_PRIOR, assert_charm_plus, assert_starts_as, image, needs_charm_mse, recipe_config,
                       recipe_start, shapes, warm)

BLOCKS = ("g_a.weconv3d", "g_s.weconv3d")


def _build(tiny_builder, **flags):
    _, cfgs = tiny_builder
    return get_arch("weconv3d").build(**{**cfgs["weconv3d"], **flags})


def test_each_claim_is_one_flag(tiny_builder):
    """No blocks and charm's entropy model is charm, name for name and shape for shape; the
    blocks add only themselves; the entropy models are 3DWeChARM (in either order), WeChARM
    or charm's; without the channel DWT the blocks are 2D multi-level ones."""
    _, cfgs = tiny_builder
    charm = shapes(get_arch("charm").build(**cfgs["charm"]))
    assert shapes(_build(tiny_builder, weconv3d=False, entropy="charm")) == charm
    blocks = _build(tiny_builder, entropy="charm")
    assert_charm_plus(blocks, cfgs["charm"], BLOCKS)
    assert isinstance(blocks.latent, ChannelConditional)
    assert sum(isinstance(m, WaveletConv3D) for m in blocks.modules()) == 4
    assert all(m.channel_dwt for m in blocks.modules() if isinstance(m, WaveletConv3D))
    flat = _build(tiny_builder, channel_dwt=False)
    assert not any(m.channel_dwt for m in flat.modules() if isinstance(m, WaveletConv3D))
    three = _build(tiny_builder, weconv3d=False)
    assert type(three.latent) is Wavelet3DChannel and three.latent.lf_first
    assert all(k.startswith(("latent.band.", "latent.wlrp.")) for k in set(shapes(three)) - set(charm))
    assert not _build(tiny_builder, lf_first=False).latent.lf_first
    assert type(_build(tiny_builder, entropy="2d").latent) is WaveletChannel
    with pytest.raises(ValueError, match="entropy"):
        _build(tiny_builder, entropy="4d")
    with pytest.raises(ValueError, match="weconv_at"):
        _build(tiny_builder, weconv_at=[16])
    with pytest.raises(ValueError, match="dwt_levels=4"):
        _build(tiny_builder, dwt_levels=4)  # a block at 1/8 of a 64-padded image holds 3 levels
    assert _build(tiny_builder, dwt_levels=3, weconv_at=[4, 8]).downsampling == 64


def test_blocks_sit_behind_the_inner_stages(tiny_builder):
    model = _build(tiny_builder)
    assert [n for n, _ in model.g_a.named_children()] == ["0", "1", "2", "3", "weconv3d4", "4", "5", "weconv3d8", "6"]
    assert [n for n, _ in model.g_s.named_children()] == ["0", "1", "weconv3d8", "2", "3", "weconv3d4", "4", "5", "6"]
    assert model.y_stride == 16 and model.downsampling == 64
    blk = model.g_a.weconv3d8
    assert (blk.wavelet.name, blk.levels, blk.kernels) == ("legall53", 2, (3, 1))


def test_warm_started_from_charm_with_charms_entropy_model_it_is_that_charm(charm_file):
    """Step 0 of ``init = charm``: the blocks start at zero, so every output, the rate
    estimate included, is the charm model's."""
    charm, _ = warm("charm", charm_file)
    model, fresh = warm("weconv3d", charm_file, **get_arch("weconv3d").tiny, entropy="charm")
    assert_starts_as(charm, model, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))


def test_warm_started_from_charm_the_transforms_are_charms(charm_file):
    """With 3DWeChARM the transforms, gains, hyperprior and z prior are charm's; only the
    step networks (zero corrections) and the blocks start fresh, and z costs what it cost."""
    charm, _ = warm("charm", charm_file)
    model, fresh = warm("weconv3d", charm_file)
    params = dict(model.named_parameters())
    assert all(k.startswith((*BLOCKS, "latent.band.", "latent.wlrp."))
               or (k.startswith(Z_PRIOR) and k not in params) for k in fresh), fresh
    x, level = image(128, 128), torch.tensor([1.3])
    charm.eval()
    model.eval()
    with torch.no_grad():
        y = charm.g_a(x)
        assert torch.equal(model.g_a(x), y)
        assert torch.equal(model.g_s(y), charm.g_s(y))
        a, b = charm(x, level), model(x, level)
    assert torch.equal(a.likelihoods["z"], b.likelihoods["z"])


def test_the_recipe_starts_from_charm_mse_with_its_lambdas():
    cfg = recipe_config("weconv3d.toml", "weconv3d")
    assert cfg.weconv3d and cfg.channel_dwt and cfg.entropy == "3d" and cfg.lf_first
    train = Recipe.load(REPO / "docs" / "weconv3d.toml").train
    assert set(train.latent_rate_weights) == {"y_lf", "y_hf"}  # the parts the model's likelihoods name


@pytest.mark.slow
@needs_charm_mse
def test_the_real_size_model_starts_at_charm_mse():
    """The recipe's model warm-started from charm.mse: its transforms are charm.mse's."""
    charm, model, _ = recipe_start("weconv3d.toml")
    x = image(128, 128, seed=2)
    with torch.no_grad():
        y = charm.eval().g_a(x)
        assert torch.equal(model.eval().g_a(x), y)
        assert torch.equal(model.g_s(y), charm.g_s(y))
