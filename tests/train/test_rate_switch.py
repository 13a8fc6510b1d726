"""The rate-switched rate weight (PO-DKIC eq. 2, HiFiC): weight above target, weight below,
targets interpolated between levels, and off by default."""
import pytest
import torch

from liccodec.train.config import TrainConfig

from test_train import data_dir, recipe  # noqa: F401  (the smoke tests' fixture and recipe)


def test_off_by_default_weighs_every_rate_by_one():
    cfg = TrainConfig()
    bpp = torch.tensor([0.1, 3.0])
    assert torch.equal(cfg.rate_weight(bpp, torch.tensor([0.0, 7.0]), 8), torch.ones(2))


def test_the_weight_switches_at_the_target_of_each_level():
    cfg = TrainConfig(rate_target=[0.1, 0.4], rate_weight_above=2.0, rate_weight_below=0.125)
    level = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5, 0.5])
    # level 0.5 sits between 0.1 and 0.4 geometrically: 0.2 bpp
    bpp = torch.tensor([0.09, 0.11, 0.39, 0.41, 0.19, 0.21])
    w = cfg.rate_weight(bpp, level, 2)
    assert w.tolist() == [0.125, 2.0, 0.125, 2.0, 0.125, 2.0]


def test_one_target_for_all_levels_and_bad_lengths():
    cfg = TrainConfig(rate_target=[0.3])
    w = cfg.rate_weight(torch.tensor([0.2, 0.5]), torch.tensor([0.0, 6.0]), 8)
    assert w.tolist() == [0.125, 2.0]
    with pytest.raises(ValueError, match="rate_target"):
        TrainConfig(rate_target=[0.1, 0.2]).rate_weight(torch.tensor([0.1]), torch.tensor([0.0]), 3)
    with pytest.raises(ValueError):
        TrainConfig(rate_target=[0.0])


def test_the_weight_carries_no_gradient_of_its_own():
    cfg = TrainConfig(rate_target=[0.3])
    bpp = torch.tensor([0.5, 0.1], requires_grad=True)
    (cfg.rate_weight(bpp, torch.zeros(2), 8) * bpp).sum().backward()
    assert bpp.grad.tolist() == [2.0, 0.125]


def test_the_trainer_applies_it(data_dir, tmp_path):  # noqa: F811
    """Weights of 1 on both sides train exactly as no switch; a high weight above a
    tiny target pushes the rate term up in the reported loss."""
    from liccodec.train.loop import Trainer

    def run(name, **switch):
        r = recipe(data_dir, tmp_path / name, 2)
        for k, v in switch.items():
            setattr(r.train, k, v)
        t = Trainer(r, "cpu")
        torch.manual_seed(0)
        return t, [t.step() for _ in range(2)]

    off, m_off = run("off")
    ones, m_ones = run("ones", rate_target=[1e-4], rate_weight_above=1.0, rate_weight_below=1.0)
    for (k, a), b in zip(off.model.state_dict().items(), ones.model.state_dict().values()):
        assert torch.equal(a, b), k
    _, m_hi = run("hi", rate_target=[1e-4], rate_weight_above=4.0)
    assert m_hi[0]["loss"] - m_off[0]["loss"] == pytest.approx(3 * m_off[0]["bpp"], rel=1e-4)
