"""Knowledge distillation (liccodec.train.distill): a frozen teacher beside the student.

With the teacher equal to the student's init, every term is exactly zero at step 0; gradients
reach the student only; a resumed run equals an uninterrupted one; the teacher never enters a
checkpoint, the optimizer or the EMA; configurations the terms cannot compare are refused
before training."""
import numpy as np
import pytest
import torch

from liccodec.errors import ModelError, UsageError
from liccodec.train.loop import Trainer, load_checkpoint

from test_train import data_dir, recipe  # noqa: F401  (the smoke tests' fixture and recipe)

CHARM = {"arch": "charm", "slices": 3, "hidden": 8, "lrp": True}
TERMS = {"distill_y": 1.0, "distill_x": 1.0, "distill_entropy": 1.0}


def charm_recipe(data_dir, out, steps, **train):  # noqa: F811
    r = recipe(data_dir, out, steps)
    r.arch = CHARM["arch"]
    r.model.update({k: v for k, v in CHARM.items() if k != "arch"})
    for k, v in train.items():
        setattr(r.train, k, v)
    r.train.__post_init__()
    return r


@pytest.fixture()
def teacher(data_dir, tmp_path):  # noqa: F811
    """A tiny charm, trained a few steps (so its slice networks are not zero) and exported
    with its manifest entry, as a shipped teacher is."""
    from liccodec.train.export import export_module

    t = Trainer(charm_recipe(data_dir, tmp_path / "teacher_run", 4), "cpu")
    with torch.no_grad():
        for p in t.model.latent.cc.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    t.run(progress=False)
    return export_module(t.model, "charm", t.recipe.model, "charm.teacher", tmp_path / "models")


def test_terms_are_zero_at_step_0_when_the_teacher_is_the_init(data_dir, tmp_path, teacher):  # noqa: F811
    r = charm_recipe(data_dir, tmp_path / "s", 3, init=str(teacher), teacher=str(teacher), **TERMS)
    t = Trainer(r, "cpu")
    m0 = t.step()
    assert m0["distill_y"] == 0 and m0["distill_x"] == 0 and m0["distill_entropy"] == 0
    m1 = t.step()  # the student has moved; the teacher has not
    assert m1["distill_y"] > 0 and m1["distill_x"] > 0 and m1["distill_entropy"] > 0


def test_gradients_reach_the_student_and_never_the_teacher(data_dir, tmp_path, teacher):  # noqa: F811
    """Pure distillation of a fresh, narrower synthesis (the fast decoder's stage 1): with the
    RD terms off, the loss is the distillation term alone, it falls, and only g_s moves."""
    r = charm_recipe(data_dir, tmp_path / "s", 30, init=str(teacher), reinit=["g_s."], teacher=str(teacher),
                     freeze=["g_a.", "latent."], distill_x=1.0, mse_weight=0.0, bpp_weight=0.0)
    r.model["synthesis"] = [8, 4, 4]
    t = Trainer(r, "cpu")
    before = {k: v.clone() for k, v in t.distiller.teacher.state_dict().items()}
    teacher_ids = {id(p) for p in t.distiller.teacher.parameters()}
    assert not teacher_ids & {id(p) for g in t.opt.param_groups for p in g["params"]}
    assert not teacher_ids & {id(p) for p in t.ema.parameters()}
    assert t.distiller.teacher.training is False
    logs = [t.step() for _ in range(30)]
    m = logs[0]
    lam = t.model.lambda_at(torch.tensor([0.0, 1.0]))  # tiny lambdas: loss = lambda * 255^2 * distill_x
    assert float(lam.min()) * 255**2 * m["distill_x"] <= m["loss"] <= float(lam.max()) * 255**2 * m["distill_x"]
    assert np.mean([l["distill_x"] for l in logs[-5:]]) < np.mean([l["distill_x"] for l in logs[:5]])
    grads = {n: p.grad for n, p in t.model.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("g_s."))
    assert all(g is None for n, g in grads.items() if not n.startswith("g_s."))
    assert t.distiller.teacher.training is False
    for k, v in t.distiller.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None and not p.requires_grad for p in t.distiller.teacher.parameters())


def test_entropy_term_trains_the_entropy_model(data_dir, tmp_path, teacher):  # noqa: F811
    """A student from scratch, with only the gap between the Gaussians of y: its hyper-synthesis
    and slice networks get gradients (and the gap falls), its synthesis none."""
    r = charm_recipe(data_dir, tmp_path / "s", 25, teacher=str(teacher), distill_entropy=1.0,
                     mse_weight=0.0, bpp_weight=0.0)
    t = Trainer(r, "cpu")
    logs = [t.step() for _ in range(25)]
    assert np.mean([l["distill_entropy"] for l in logs[-5:]]) < np.mean([l["distill_entropy"] for l in logs[:5]])
    grads = {n: p.grad for n, p in t.model.named_parameters()}
    assert grads["latent.h_s.0.weight"].abs().sum() > 0 and grads["latent.cc.1.0.weight"].abs().sum() > 0
    assert grads["g_s.0.weight"] is None or not grads["g_s.0.weight"].any()  # mse_weight = 0: zeros


def test_gaussian_gap_is_zero_for_equal_gaussians_and_the_fisher_form_otherwise():
    from liccodec.train.distill import gaussian_gap

    m, s = torch.randn(2, 5, 4, 4), torch.rand(2, 5, 4, 4) * 3
    assert torch.equal(gaussian_gap(m, s, m, s), torch.zeros_like(m))
    gap = gaussian_gap(torch.tensor(0.5), torch.tensor(1.0), torch.tensor(0.8), torch.tensor(2.0))
    assert float(gap) == pytest.approx(0.5 * 0.3**2 + np.log(2) ** 2, rel=1e-6)
    # scales below the likelihood's floor (0.11) are the floor: they code alike
    assert float(gaussian_gap(torch.tensor(0.0), torch.tensor(0.01), torch.tensor(0.0), torch.tensor(0.1))) == 0
    # near sigma = 1 it is KL(teacher || student) to second order
    mt, st, ms, ss = 0.0, 1.0, 0.01, 1.01
    kl = np.log(ss / st) + (st**2 + (mt - ms) ** 2) / (2 * ss**2) - 0.5
    got = float(gaussian_gap(*(torch.tensor(v, dtype=torch.float64) for v in (mt, st, ms, ss))))
    assert got == pytest.approx(kl, rel=0.05)


def test_resume_is_exact_and_checkpoints_hold_no_teacher(data_dir, tmp_path, teacher):  # noqa: F811
    """Mirrors test_train.test_resume_is_exact with the three terms on, from a student that is
    not the teacher (a differently seeded from-scratch charm)."""
    kw = dict(teacher=str(teacher), distill_y=0.01, distill_x=0.5, distill_entropy=0.1)
    a = Trainer(charm_recipe(data_dir, tmp_path / "a", 12, **kw), "cpu")
    a.run(progress=False)
    b = Trainer(charm_recipe(data_dir, tmp_path / "b", 5, **kw), "cpu")
    b.run(progress=False)
    ck = load_checkpoint(tmp_path / "b" / "last.pt")
    assert set(ck["model"]) == set(b.model.state_dict()) and set(ck["ema"]) == set(b.model.state_dict())
    n_trained = sum(len(g["params"]) for g in b.opt.param_groups)
    assert len(ck["opt"]["state"]) == n_trained
    assert not [k for k in ck if "teacher" in k and k != "teacher_sha256"]
    assert ck["teacher_sha256"] == b.distiller.sha256
    b2 = Trainer(charm_recipe(data_dir, tmp_path / "b", 12, **kw), "cpu")
    b2.load(tmp_path / "b" / "last.pt")
    b2.run(progress=False)
    assert b2.state.step == a.state.step == 12
    for (k, va), vb in zip(a.model.state_dict().items(), b2.model.state_dict().values()):
        assert torch.equal(va, vb), k
    for va, vb in zip(a.ema.state_dict().values(), b2.ema.state_dict().values()):
        assert torch.equal(va, vb)
    logs = [l for l in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    assert all(f'"{k}"' in logs[-1] for k in ("distill_y", "distill_x", "distill_entropy"))

    # a teacher file that changed since is refused on resume
    other = charm_recipe(data_dir, tmp_path / "b", 12, **kw)
    from liccodec.train.export import export_module

    other.train.teacher = str(export_module(a.model, "charm", other.model, "charm.other", tmp_path / "models2"))
    with pytest.raises(UsageError, match="sha256"):
        Trainer(other, "cpu").load(tmp_path / "b" / "last.pt")


def test_config_errors_are_clear(data_dir, tmp_path, teacher):  # noqa: F811
    with pytest.raises(ValueError, match="need a teacher"):
        charm_recipe(data_dir, tmp_path / "s", 1, distill_x=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        charm_recipe(data_dir, tmp_path / "s", 1, teacher=str(teacher), distill_y=-1.0)
    with pytest.raises(ModelError, match="no such weights file"):
        Trainer(charm_recipe(data_dir, tmp_path / "s", 1, teacher=str(tmp_path / "nope.safetensors"),
                             distill_x=1.0), "cpu")
    wide = charm_recipe(data_dir, tmp_path / "s", 1, teacher=str(teacher), distill_y=1.0)
    wide.model["M"] = 18  # the teacher's M is 12
    with pytest.raises(UsageError, match=r"distill_y .*\(18, 8, 8\).*\(12, 8, 8\)"):
        Trainer(wide, "cpu")
    wide.train.distill_y, wide.train.distill_x = 0.0, 1.0  # the reconstructions still compare
    assert Trainer(wide, "cpu").distiller is not None
    msh = charm_recipe(data_dir, tmp_path / "s", 1, teacher=str(teacher), distill_entropy=1.0)
    msh.arch = "msh"
    for k in ("slices", "hidden", "lrp"):
        del msh.model[k]
    with pytest.raises(UsageError, match="distill_entropy .*GainedHyperprior gives 1 groups"):
        Trainer(msh, "cpu")
    lam = charm_recipe(data_dir, tmp_path / "s", 1, teacher=str(teacher), distill_x=1.0)
    lam.model["lambdas"] = [0.01, 0.02, 0.05]
    with pytest.raises(UsageError, match="same lambdas"):
        Trainer(lam, "cpu")
    lam.train.distill_x, lam.train.distill_y = 0.0, 1.0  # y does not depend on the level
    Trainer(lam, "cpu")


def test_a_teacher_with_a_base_is_assembled_from_its_chain(data_dir, tmp_path, teacher):  # noqa: F811
    """A teacher exported over a base (its file holds what differs) is read as init reads it:
    the base's tensors under its own, so it equals the full model."""
    from liccodec.train.distill import load_teacher
    from liccodec.train.export import export_module

    t = Trainer(charm_recipe(data_dir, tmp_path / "g", 2, init=str(teacher), freeze=["g_a.", "latent."]), "cpu")
    t.run(progress=False)
    full = export_module(t.model, "charm", t.recipe.model, "charm.full", tmp_path / "models")
    delta = export_module(t.model, "charm", t.recipe.model, "charm.delta", tmp_path / "models", base="charm.teacher")
    assert delta.stat().st_size < full.stat().st_size
    a, _ = load_teacher(full)
    b, _ = load_teacher(delta)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_the_cli_refuses_a_bad_recipe_with_a_usage_error(data_dir, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from liccodec.cli.main import main

    def run(extra: str):
        cfg = tmp_path / "r.toml"
        cfg.write_text(f'[model]\narch = "msh"\nN = 8\nM = 12\nlambdas = [0.01, 0.05]\n[train]\n'
                       f'data = "{data_dir}"\nout = "{tmp_path / "run"}"\n{extra}\n')
        return CliRunner().invoke(main, ["train", "--config", str(cfg)])

    r = run("distill_x = 1.0")
    assert r.exit_code == 2 and "need a teacher" in r.output
    r = run(f'distill_x = 1.0\nteacher = "{tmp_path / "gone.safetensors"}"')
    assert r.exit_code == 7 and "no such weights file" in r.output
