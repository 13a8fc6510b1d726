"""Per-latent rate weights (``TrainConfig.latent_rate_weights``: 3DM-WeConvene's two-step
LF/HF rate training): a step schedule per named latent, weights of 1 train exactly as none,
a weight moves the loss by that latent's bits, names the model does not have are refused."""
import pytest
import torch

from liccodec.train.config import Recipe, TrainConfig

from test_train import data_dir  # noqa: F401  (the smoke tests' fixture)


def test_the_schedule_is_per_latent_and_piecewise_constant():
    cfg = TrainConfig(latent_rate_weights={"y_lf": [[0, 1.0], [100, 0.5]], "y_hf": [[50, 2.0]]})
    assert cfg.latent_rate_weights_at(0) == {"y_lf": 1.0, "y_hf": 1.0}
    assert cfg.latent_rate_weights_at(50) == {"y_lf": 1.0, "y_hf": 2.0}
    assert cfg.latent_rate_weights_at(100) == {"y_lf": 0.5, "y_hf": 2.0}
    assert TrainConfig().latent_rate_weights_at(7) == {}
    for bad in ({"y": []}, {"y": [[10, 1.0], [5, 2.0]]}, {"y": [[0, -1.0]]}, {"y": [1.0]}):
        with pytest.raises(ValueError, match="latent_rate_weights"):
            TrainConfig(latent_rate_weights=bad)


def _recipe(data, out, **weights):
    return Recipe.from_dict({
        "model": {"arch": "weconv3d", "N": 8, "M": 12, "lambdas": [0.01, 0.05], "slices": 3, "hidden": 8},
        "train": {"data": str(data), "val_data": str(data), "out": str(out), "batch": 2,
                  "patch_schedule": [[0, 64]], "steps": 2, "warmup": 1, "lr": 1e-3, "val_every": 0,
                  "ckpt_every_s": 1e9, "latent_rate_weights": weights},
    })


def test_the_trainer_weighs_each_latents_bits(data_dir, tmp_path):  # noqa: F811
    from liccodec.train.loop import Trainer

    def run(name, **weights):
        t = Trainer(_recipe(data_dir, tmp_path / name, **weights), "cpu")
        torch.manual_seed(0)
        return t, t.step()

    plain, m_plain = run("plain")
    ones, m_ones = run("ones", y_lf=[[0, 1.0]], y_hf=[[0, 1.0]])
    for (k, a), b in zip(plain.model.state_dict().items(), ones.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert m_ones["loss"] == m_plain["loss"] and m_ones["bpp"] == m_plain["bpp"]
    # the parts' rates are logged, and they add up to y's share of the real bpp
    assert 0 < m_ones["bpp_y_lf"] and 0 < m_ones["bpp_y_hf"] and m_ones["bpp_y_lf"] + m_ones["bpp_y_hf"] < m_ones["bpp"]
    _, m_half = run("half", y_hf=[[0, 0.5]])
    assert m_half["bpp"] == m_plain["bpp"]  # the logged rate is the real one
    assert m_half["loss"] == pytest.approx(m_plain["loss"] - 0.5 * m_half["bpp_y_hf"], rel=1e-5)
    with pytest.raises(ValueError, match="latents are"):
        run("typo", y_low=[[0, 2.0]])


def test_a_key_may_name_a_channel_range():
    from liccodec.train.config import rate_key

    assert rate_key("y") == ("y", None, None)
    assert rate_key("y[192:]") == ("y", 192, None)
    assert rate_key("y_hf[:8]") == ("y_hf", 0, 8)
    for bad in ("y[]", "y[:]", "y[5:5]", "y[a:]", "y 1", "y[3]"):
        with pytest.raises(ValueError, match="latent_rate_weights"):
            rate_key(bad)
    with pytest.raises(ValueError, match="latent_rate_weights"):
        TrainConfig(latent_rate_weights={"y[:]": [[0, 1.0]]})


def test_a_channel_range_weighs_those_channels_alone(data_dir, tmp_path):  # noqa: F811
    from liccodec.train.loop import Trainer

    def run(name, **weights):
        recipe = _recipe(data_dir, tmp_path / name, **weights).to_dict()
        recipe["model"] = {"arch": "charm", "N": 8, "M": 12, "lambdas": [0.01, 0.05], "slices": 3, "hidden": 8}
        t = Trainer(Recipe.from_dict(recipe), "cpu")
        torch.manual_seed(0)
        return t.step()

    plain = run("plain")
    ones = run("ones", **{"y[4:]": [[0, 1.0]]})
    assert ones["loss"] == pytest.approx(plain["loss"], rel=1e-6) and ones["bpp"] == plain["bpp"]
    part = run("part", **{"y[4:]": [[0, 0.25]]})
    assert part["bpp"] == plain["bpp"] and 0 < part["bpp_y[4:]"] < part["bpp"]
    assert part["loss"] == pytest.approx(plain["loss"] - 0.75 * part["bpp_y[4:]"], rel=1e-5)
    # a range overrides its latent's own weight on those channels
    both = run("both", y=[[0, 0.5]], **{"y[4:]": [[0, 0.25]]})
    assert both["loss"] == pytest.approx(plain["loss"] - 0.5 * (both["bpp_y"] - both["bpp_y[4:]"])
                                         - 0.75 * both["bpp_y[4:]"], rel=1e-5)
