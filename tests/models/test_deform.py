"""Fu et al. (TIP 2024) on charm (arch ``deform``): charm plus its named blocks, a warm start
from a shipped charm model gives charm's outputs, and the L1 term and the zero-channel
statistics that training needs."""
import pytest
import torch

from liccodec.latent.slicecheckerboard import SliceCheckerboard
from liccodec.models import get_arch
from liccodec.nn.deformable import DeformableResidual

from charm_zoo import assert_charm_plus, assert_starts_as, image, needs_charm_mse, recipe_config, recipe_start, warm

BLOCKS = ("g_a.drm", "g_s.drm", "latent.sp.", "latent.pa_a.", "latent.pa_n.", "latent.zero_freq")


def test_it_is_charm_plus_its_blocks(tiny_builder):
    _, cfgs = tiny_builder
    model = get_arch("deform").build(**cfgs["deform"])
    assert_charm_plus(model, cfgs["charm"], BLOCKS)
    assert isinstance(model.latent, SliceCheckerboard)
    assert [n for n, _ in model.g_a.named_children()] == ["0", "1", "2", "3", "drm4", "4", "5", "drm8", "6"]
    assert [n for n, _ in model.g_s.named_children()] == ["0", "1", "drm8", "2", "3", "drm4", "4", "5", "6"]
    assert sum(isinstance(m, DeformableResidual) for m in model.modules()) == 4
    assert model.y_stride == 16 and model.downsampling == 64
    with pytest.raises(ValueError, match="deform_ga_at"):
        get_arch("deform").build(**{**cfgs["deform"], "deform_ga_at": [16]})


def test_warm_started_from_charm_it_is_that_charm(charm_file):
    """Without zero-channel skipping, step 0 of ``init = charm`` is the charm model: every
    new path starts at zero, so x_hat and the likelihoods are charm's bit for bit."""
    charm, _ = warm("charm", charm_file)
    model, fresh = warm("deform", charm_file, **get_arch("deform").tiny, skip_zero=False)
    assert_starts_as(charm, model, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))


def test_with_skipping_the_estimate_is_what_coding_writes(charm_file):
    """With skipping (outside training) the likelihoods are charm's, except that an all-zero
    channel's symbols cost nothing and each channel's first position carries its flag's
    probability (1/2 while untrained: one bit)."""
    charm, _ = warm("charm", charm_file)
    model, _ = warm("deform", charm_file)
    x, level = image(128, 128, seed=4), torch.tensor([0.0])
    with torch.no_grad():
        a, b = charm.eval()(x, level), model.eval()(x, level)
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.likelihoods["z"], b.likelihoods["z"])
    la, lb = a.likelihoods["y"][0].flatten(1), b.likelihoods["y"][0].flatten(1)
    half = torch.tensor(0.5)
    skipped = 0
    for c in range(la.shape[0]):
        if torch.equal(lb[c, 1:], la[c, 1:]) and torch.equal(lb[c, 0], la[c, 0] * half):
            continue
        assert torch.equal(lb[c, 1:], torch.ones_like(lb[c, 1:])) and torch.equal(lb[c, 0], half), c
        skipped += 1
    assert skipped < la.shape[0]


def test_training_learns_how_often_channels_are_all_zero(tiny_builder):
    model = get_arch("deform").build(**get_arch("deform").tiny).train()
    before = model.latent.zero_freq.clone()
    with torch.no_grad():
        model(image(64, 64), torch.tensor([1.6, 0.2]))
    moved = (model.latent.zero_freq != before).any(dim=1)
    assert moved.tolist() == [True, False, True]   # levels 0 and 2: the images' nearest
    assert model.level_tables()[-1] == "latent.zero_freq"


def test_the_l1_term_is_per_image_and_trains(tiny_builder):
    model = get_arch("deform").build(**{**get_arch("deform").tiny, "l1_weight": 0.5}).train()
    out = model(image(64, 64).repeat(2, 1, 1, 1), torch.tensor([0.3, 1.2]))
    l1 = model.regularizer(out)
    assert l1.shape == (2,) and torch.allclose(l1, 0.5 * out.y_hat.abs().flatten(1).mean(1))
    l1.sum().backward()
    assert model.g_a[0].weight.grad.abs().sum() > 0
    off = get_arch("deform").build(**get_arch("deform").tiny)
    assert off.regularizer(off(image(64, 64), torch.tensor([0.3]))) is None  # weight 0: no term


def test_the_recipe_starts_from_charm_mse_with_its_lambdas():
    cfg = recipe_config("deform.toml", "deform")
    assert cfg.skip_zero and tuple(cfg.deform_ga_at) == (4, 8) and tuple(cfg.deform_gs_at) == (8, 4)


@pytest.mark.slow
@needs_charm_mse
def test_the_real_size_model_starts_at_charm_mse():
    """The recipe's model warm-started from charm.mse gives charm.mse's reconstruction."""
    charm, model, fresh = recipe_start("deform.toml")
    x = image(128, 128, seed=2)
    with torch.no_grad():
        a, b = charm.eval()(x, torch.tensor([3.0])), model.eval()(x, torch.tensor([3.0]))
    assert torch.equal(a.x_hat, b.x_hat)
