"""S2LIC (arch ``s2lic``): charm plus its blocks and ACGC networks, name for name; a warm start
from a charm model gives that model's outputs and rate at step 0; the recipe trains as its
control."""
import torch

from liccodec.models import get_arch
from liccodec.nn.dense import DenseEnhancement
from liccodec.nn.swin import ResidualSwinV2Block

from charm_zoo import CHARM_MSE, assert_charm_plus, assert_starts_as, image, needs_charm_mse, warm

BLOCKS = ("g_a.swin", "g_a.enh", "g_s.swin", "g_s.enh", "latent.sp.", "latent.pa_a.", "latent.pa_n.",
          "latent.acgc.", "latent.zero_freq")


def test_it_is_charm_plus_its_blocks(tiny_builder):
    _, cfgs = tiny_builder
    model = get_arch("s2lic").build(**cfgs["s2lic"])
    assert [n for n, _ in model.g_a.named_children()] == ["enh", "0", "1", "2", "3", "4", "5", "swin8", "6"]
    assert [n for n, _ in model.g_s.named_children()] == ["0", "1", "swin8", "2", "3", "4", "5", "6", "enh"]
    assert sum(isinstance(m, ResidualSwinV2Block) for m in model.modules()) == 2
    assert sum(isinstance(m, DenseEnhancement) for m in model.modules()) == 2
    assert sorted(model.latent.acgc) == ["1", "2"]
    assert_charm_plus(model, cfgs["charm"], BLOCKS)


def test_warm_started_from_charm_it_is_that_charm(charm_file):
    charm, _ = warm("charm", charm_file)
    model, fresh = warm("s2lic", charm_file)
    assert any(k.startswith("latent.acgc.2") for k in fresh) and any(k.startswith("g_s.enh") for k in fresh)
    assert_starts_as(charm, model, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))


@needs_charm_mse
def test_warm_started_from_charm_mse_it_is_charm_mse():
    from liccodec.weights import get_spec

    cfg = dict(get_spec("charm.mse").config)
    charm, _ = warm("charm", CHARM_MSE, **cfg)
    model, fresh = warm("s2lic", CHARM_MSE, **cfg)
    assert_starts_as(charm, model, fresh, BLOCKS, image(64, 128), torch.tensor([2.5]))


def test_gradients_reach_the_new_parts(tiny_builder):
    """The zero-started output layers get a gradient at once; after one step the attention too."""
    _, cfgs = tiny_builder
    model = get_arch("s2lic").build(**cfgs["s2lic"]).train()
    x, level = image(), torch.tensor([1.0])

    def step():
        model.zero_grad(set_to_none=True)
        out = model(x, level)
        (sum((-torch.log2(v)).sum() for v in out.likelihoods.values()) + 100 * (out.x_hat - x).pow(2).sum()).backward()

    step()
    with torch.no_grad():  # a small signed step (the raw rate gradient is large)
        for p in model.parameters():
            if p.grad is not None:
                p -= 1e-4 * p.grad.sign()
    step()
    # a softmax ignores what shifts every logit alike: a key's bias, and any logit when there is
    # one token (slice 1's channel attention reads slice 0 alone); those get no gradient
    acgc = [p for k, p in model.named_parameters() if k.startswith("latent.acgc.")
            and not (".k_" in k and k.endswith("bias")) and not k.startswith(("latent.acgc.1.q_ch", "latent.acgc.1.k_ch"))]
    assert acgc and all(p.grad is not None and p.grad.abs().sum() > 0 for p in acgc)


def test_the_recipe_trains_as_its_control():
    import dataclasses

    from charm_zoo import REPO, recipe_config
    from liccodec.train.config import Recipe

    own, ctl = (dataclasses.asdict(Recipe.load(REPO / "docs" / r).train) for r in ("s2lic.toml", "charm.ctl.toml"))
    assert own.pop("out") != ctl.pop("out") and own == ctl
    recipe_config("s2lic.toml", "s2lic")
