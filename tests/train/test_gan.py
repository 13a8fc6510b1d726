"""Perceptual fine-tuning: the relativistic PatchGAN term, its resumability, and shipping the
result as a synthesis on top of a base model (only the tensors that differ)."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from liccodec.errors import ModelError
from liccodec.train.export import export_module
from liccodec.train.loop import Trainer
from liccodec.train.perceptual import PatchDiscriminator, relativistic_losses

from test_train import data_dir, recipe  # noqa: F401  (the smoke tests' fixture and recipe)


def gan_recipe(data_dir, out, steps, init=""):
    r = recipe(data_dir, out, steps)
    r.arch = "charm"
    r.model.update(slices=2, hidden=8)
    r.train.adversarial, r.train.disc_width, r.train.disc_start = 0.1, 4, 1
    if init:
        r.train.init, r.train.freeze = str(init), ["g_a.", "latent."]
    return r


def test_relativistic_losses_reward_the_side_that_looks_more_real():
    real, fake = torch.full((2, 1, 4, 4), 3.0), torch.full((2, 1, 4, 4), -3.0)
    d_good, g_bad = relativistic_losses(real, fake)
    d_bad, g_good = relativistic_losses(fake, real)
    assert d_good < 0.01 < d_bad and g_good < 0.01 < g_bad
    assert PatchDiscriminator(4)(torch.rand(1, 3, 64, 64)).shape == (1, 1, 8, 8)


def test_gan_training_resumes_exactly(data_dir, tmp_path):  # noqa: F811
    a = Trainer(gan_recipe(data_dir, tmp_path / "a", 4), "cpu")
    a.run(progress=False)
    b = Trainer(gan_recipe(data_dir, tmp_path / "b", 2), "cpu")
    b.run(progress=False)
    b2 = Trainer(gan_recipe(data_dir, tmp_path / "b", 4), "cpu")
    b2.load(tmp_path / "b" / "last.pt")
    b2.run(progress=False)
    for (k, va), vb in zip(a.model.state_dict().items(), b2.model.state_dict().values()):
        assert torch.equal(va, vb), k
    for (k, va), vb in zip(a.perceptual.disc.state_dict().items(), b2.perceptual.disc.state_dict().values()):
        assert torch.equal(va, vb), k
    assert "g_adv" in a.step() and "d_adv" in a.step()


def test_synthesis_ships_on_top_of_its_base(data_dir, tmp_path, monkeypatch):  # noqa: F811
    """Train g_s alone behind a frozen base with the adversarial term, export it with
    ``base``: the file holds g_s only, and both loaders rebuild the full model from it."""
    from liccodec import runtime, weights

    models = tmp_path / "models"
    t = Trainer(gan_recipe(data_dir, tmp_path / "m", 2), "cpu")
    t.run(progress=False)
    src = export_module(t.ema, "charm", t.recipe.model, "charm.tiny", models)
    s = Trainer(gan_recipe(data_dir, tmp_path / "s", 4, init=src), "cpu")
    s.run(progress=False)
    path = export_module(s.ema, "charm", s.recipe.model, "charm.tinygan", models, base="charm.tiny",
                         metric="lpips")
    own = load_file(path)
    assert own and all(k.startswith("g_s.") for k in own)
    monkeypatch.setenv("LICCODEC_MODELS", str(models))
    weights._load.cache_clear()
    runtime._load.cache_clear()
    full = weights.read_tensors(weights.get_spec("charm.tinygan"))
    base = load_file(src)
    assert set(full) == set(base)
    for k, v in full.items():
        assert torch.equal(v, own[k] if k in own else base[k]), k
    model = weights.load_model("charm.tinygan")
    assert torch.equal(model.g_s[0].weight, own["g_s.0.weight"])
    dec = runtime.load_decoder("charm.tinygan")
    assert dec is not runtime.load_decoder("charm.tiny")
    # a tampered base is refused when the perceptual model loads
    data = bytearray(src.read_bytes())
    data[-1] ^= 1
    src.write_bytes(bytes(data))
    weights._load.cache_clear()
    with pytest.raises(ModelError, match="sha256"):
        weights.load_model("charm.tinygan")
    with pytest.raises(ValueError, match="not in"):
        export_module(s.ema, "charm", s.recipe.model, "charm.x", tmp_path / "elsewhere", base="charm.tiny")
    assert np.isfinite(s.step()["loss"])


def test_semantic_discriminator_is_conditioned_on_the_original():
    """ICISP's discriminator: logits at 1/16 of the image, and a different condition (another
    original, another latent) changes them."""
    from liccodec.train.perceptual import SemanticDiscriminator, VGGSemantics

    torch.manual_seed(0)
    sem, disc = VGGSemantics(pretrained=False), SemanticDiscriminator(4, latent_channels=12)
    x, other = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    y_hat = torch.randn(2, 12, 4, 4)
    assert sem(x).shape == (2, 512, 4, 4)
    logits = disc(x, (sem(x), y_hat))
    assert logits.shape == (2, 1, 4, 4)
    assert not torch.allclose(logits, disc(x, (sem(other), y_hat)))
    assert not torch.allclose(logits, disc(x, (sem(x), -y_hat)))
    assert not any(p.requires_grad for p in sem.parameters())


def test_semantic_gan_training_runs_and_resumes(data_dir, tmp_path, monkeypatch):  # noqa: F811
    import liccodec.train.perceptual as perceptual

    real = perceptual.VGGSemantics
    monkeypatch.setattr(perceptual, "VGGSemantics", lambda pretrained=True: real(False))
    torch.manual_seed(0)

    def semantic(out, steps):
        r = gan_recipe(data_dir, out, steps)
        r.train.disc = "semantic"
        return r

    a = Trainer(semantic(tmp_path / "a", 3), "cpu")
    a.run(progress=False)
    b = Trainer(semantic(tmp_path / "b", 2), "cpu")
    b.run(progress=False)
    b2 = Trainer(semantic(tmp_path / "b", 3), "cpu")
    b2.load(tmp_path / "b" / "last.pt")
    b2.run(progress=False)
    for (k, va), vb in zip(a.perceptual.disc.state_dict().items(), b2.perceptual.disc.state_dict().values()):
        assert torch.equal(va, vb), k
    log = a.step()
    assert np.isfinite(log["g_adv"]) and np.isfinite(log["d_adv"])


def test_fresh_parameters_get_their_own_learning_rate(data_dir, tmp_path):  # noqa: F811
    """An extended architecture warm-started from its base: the blocks the base lacks form a
    second optimizer group whose learning rate is ``fresh_lr_scale`` times the others'."""
    t = Trainer(gan_recipe(data_dir, tmp_path / "m", 1), "cpu")
    t.run(progress=False)
    src = export_module(t.ema, "charm", t.recipe.model, "charm.tiny", tmp_path / "models")
    r = gan_recipe(data_dir, tmp_path / "w", 1, init=src)
    r.arch = "weconv"
    r.model.update(wecharm=False)
    r.train.fresh_lr_scale = 4.0
    w = Trainer(r, "cpu")
    names = {id(p): n for n, p in w.model.named_parameters()}
    old, new = w.opt.param_groups
    assert new["params"] and all(".weconv" in names[id(p)] for p in new["params"])
    assert not any(".weconv" in names[id(p)] for p in old["params"])
    w.step()
    assert new["lr"] == pytest.approx(4 * old["lr"])
