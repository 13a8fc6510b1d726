"""Training smoke test: the loss falls and a resumed run equals an uninterrupted one."""
import numpy as np
import pytest
import torch
from PIL import Image

from liccodec.train.config import Recipe
from liccodec.train.loop import Trainer


@pytest.fixture()
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    yy, xx = np.mgrid[0:96, 0:96]
    for i in range(6):
        base = np.stack([xx * (1 + i), yy * 2, (xx + yy)], axis=2) % 256
        img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i}.png")
    return d


def recipe(data_dir, out, steps):
    return Recipe.from_dict({
        "model": {"arch": "msh", "N": 8, "M": 12, "lambdas": [0.01, 0.05]},
        "train": {"data": str(data_dir), "val_data": str(data_dir), "out": str(out), "batch": 4,
                  "patch_schedule": [[0, 64]], "steps": steps, "warmup": 5, "lr": 3e-3,
                  "val_every": 0, "log_every": 10, "ckpt_every_s": 1e9},
    })


def test_loss_falls(data_dir, tmp_path):
    t = Trainer(recipe(data_dir, tmp_path / "run", 60), "cpu")
    losses = [t.step()["loss"] for _ in range(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_resume_is_exact(data_dir, tmp_path):
    ra = recipe(data_dir, tmp_path / "a", 16)
    ra.train.keep_steps = [7]
    a = Trainer(ra, "cpu")
    a.run(progress=False)
    b = Trainer(recipe(data_dir, tmp_path / "b", 7), "cpu")
    b.run(progress=False)
    # the copy kept at step 7 of the longer run is the 7-step run's checkpoint
    kept, short = (torch.load(tmp_path / d / f, weights_only=False) for d, f in (("a", "step-7.pt"), ("b", "last.pt")))
    assert kept["state"]["step"] == 7
    for k, v in short["model"].items():
        assert torch.equal(kept["model"][k], v), k
    b2 = Trainer(recipe(data_dir, tmp_path / "b", 16), "cpu")
    b2.load(tmp_path / "b" / "last.pt")
    b2.run(progress=False)
    assert b2.state.step == a.state.step == 16
    for (k, va), vb in zip(a.model.state_dict().items(), b2.model.state_dict().values()):
        assert torch.equal(va, vb), k
    for va, vb in zip(a.ema.state_dict().values(), b2.ema.state_dict().values()):
        assert torch.equal(va, vb)


def test_validation_codes_real_files(data_dir, tmp_path):
    r = recipe(data_dir, tmp_path / "v", 1)
    r.train.val_images, r.train.val_levels = 2, [0.0, 1.0]
    t = Trainer(r, "cpu")
    res = t.validate()
    assert set(res) == {"level0", "level1"}
    for v in res.values():
        assert v["bpp"] > 0 and v["bpp_est"] > 0 and 0 < v["psnr"] < 100


def test_warm_start_from_export(data_dir, tmp_path):
    from liccodec.train.export import export_module
    from liccodec.train.warmstart import warm_start

    t = Trainer(recipe(data_dir, tmp_path / "w", 3), "cpu")
    t.run(progress=False)
    shipped = export_module(t.ema, "msh", t.recipe.model, "msh.tiny", tmp_path / "models")
    r = recipe(data_dir, tmp_path / "w2", 3)
    r.model["lambdas"] = [0.005, 0.01, 0.05]  # one new, lower lambda
    r.train.init = str(shipped)
    t2 = Trainer(r, "cpu")
    src, dst = t.ema.state_dict(), t2.model.state_dict()
    for k in ("g_a.0.weight", "g_s.6.bias", "latent.h_a.0.weight"):
        assert torch.allclose(src[k], dst[k], atol=1e-3, rtol=1e-3), k  # float16 round trip
    for k in ("latent.h_s.0.weight", "latent.h_s.4.bias"):
        assert torch.allclose(src[k], dst[k], atol=1e-4), k  # dequantised integer layers
    g_src, g_dst = src["latent.gain.log_gain"], dst["latent.gain.log_gain"]
    assert torch.equal(g_dst[1:], g_src)
    t = np.log(0.005 / 0.01) / np.log(0.05 / 0.01)  # linear in log-lambda, extrapolated
    assert torch.allclose(g_dst[0], g_src[0] + float(t) * (g_src[1] - g_src[0]), atol=1e-6)
    fresh = warm_start(t2.model, shipped)  # the file carries the z prior: only its buffers stay
    assert all(k.startswith("latent.entropy_bottleneck.") for k in fresh)
    for k in ("latent.entropy_bottleneck.matrices.0", "latent.entropy_bottleneck.factors.1"):
        assert k not in fresh and torch.equal(src[k], dst[k])


def test_charm_warm_starts_from_msh_and_from_itself(data_dir, tmp_path):
    """msh -> charm: everything but the slice networks comes over, and those start as zero
    corrections; charm -> charm: the slice networks come back from their integer export;
    charm -> charm with residual prediction: only that network is new."""
    from liccodec.train.export import export_module
    from liccodec.train.warmstart import warm_start

    t = Trainer(recipe(data_dir, tmp_path / "m", 3), "cpu")
    t.run(progress=False)
    msh = export_module(t.ema, "msh", t.recipe.model, "msh.tiny", tmp_path / "models")
    r = recipe(data_dir, tmp_path / "c", 3)
    r.arch = "charm"
    r.model.update(slices=3, hidden=8)
    charm = Trainer(r, "cpu").model
    fresh = warm_start(charm, msh)
    assert {k.rsplit(".", 2)[0] for k in fresh if not k.startswith("latent.entropy_bottleneck.")} == {
        f"latent.cc.{i}" for i in range(3)}
    assert all(not p.any() for n, p in charm.named_parameters() if n.startswith("latent.cc.") and ".4." in n)

    with torch.no_grad():
        for p in charm.latent.cc.parameters():
            p.normal_(0, 0.05)
    shipped = export_module(charm, "charm", r.model, "charm.tiny", tmp_path / "models")
    again = Trainer(r, "cpu").model
    assert not [k for k in warm_start(again, shipped) if not k.startswith("latent.entropy_bottleneck.")]
    src, dst = charm.state_dict(), again.state_dict()
    for k in ("latent.cc.0.0.weight", "latent.cc.2.4.bias"):
        assert torch.allclose(src[k], dst[k], atol=1e-4), k  # dequantised integer layers

    r.model.update(lrp=True)
    fresh = warm_start(Trainer(r, "cpu").model, shipped)
    assert {k.rsplit(".", 2)[0] for k in fresh if not k.startswith("latent.entropy_bottleneck.")} == {
        f"latent.lrp.nets.{i}" for i in range(3)}


def test_narrow_synthesis_trains_alone_behind_a_frozen_encoder(data_dir, tmp_path):
    """reinit + freeze (charm.fast's recipe): a warm start into a narrower g_s keeps the
    layers whose shapes fit, and training moves g_s alone, so the exported encoder and
    entropy model, and hence every coded file, stay those of the source weights."""
    from safetensors.torch import load_file

    from liccodec.train.export import export_module

    t = Trainer(recipe(data_dir, tmp_path / "m", 3), "cpu")
    t.run(progress=False)
    src = export_module(t.ema, "msh", t.recipe.model, "msh.tiny", tmp_path / "models")
    r = recipe(data_dir, tmp_path / "s", 4)
    r.model["synthesis"] = [8, 4, 4]
    r.train.init = str(src)
    with pytest.raises(ValueError, match="does not fit"):
        Trainer(r, "cpu")
    r.train.reinit, r.train.freeze = ["g_s."], ["g_a.", "latent."]
    s = Trainer(r, "cpu")
    assert s.aux_opt is None and all(n.startswith("g_s.") for n, p in s.model.named_parameters() if p.requires_grad)
    s.run(progress=False)
    student = load_file(export_module(s.ema, "msh", r.model, "msh.student", tmp_path / "models"))
    teacher = load_file(src)
    assert student["g_s.6.weight"].shape[0] == 4
    for k, v in teacher.items():
        if not k.startswith("g_s."):
            assert torch.equal(student[k], v), k
    assert not torch.equal(student["g_s.0.weight"], teacher["g_s.0.weight"])  # loaded, then trained


def test_a_frozen_z_prior_still_prices_z_for_h_a(data_dir, tmp_path):
    """Frozen modules run in eval mode, but the z prior's likelihood follows the training
    latent codec: noise, not rounding, so z's bits pass a gradient to h_a. (Session 27's
    charm.ga192 froze the prior and trained h_a when the prior rounded: h_a drifted, and
    quality 1 spent 9x the bits on z.)"""
    r = recipe(data_dir, tmp_path / "z", 1)
    r.train.freeze = ["g_s.", "latent.entropy_bottleneck.", "latent.h_s."]
    t = Trainer(r, "cpu")
    model = t.model.train()
    for m in t.frozen_modules:
        m.eval()
    x = torch.rand(2, 3, 64, 64)
    out = model(x, torch.tensor([0.0, 1.0]))
    (-torch.log2(out.likelihoods["z"])).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters() if n.startswith("latent.h_a.") and n.endswith("weight"))
    # validation and coding (eval mode throughout) still price the rounded z
    model.eval()
    with torch.no_grad():
        a, b = model(x, torch.tensor([0.0, 1.0])), model(x, torch.tensor([0.0, 1.0]))
    assert torch.equal(a.likelihoods["z"], b.likelihoods["z"])


def test_override_parses_toml_values(data_dir, tmp_path):
    r = recipe(data_dir, tmp_path / "o", 3)
    r.train.override(["decay_start=12", "lr=2e-4", 'init="a/b.safetensors"', "amp=none"])
    assert (r.train.decay_start, r.train.lr, r.train.init, r.train.amp) == (12, 2e-4, "a/b.safetensors", "none")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        r.train.override(["no_such_field=1"])


def test_level_power_draws_high_levels_more_often():
    from liccodec.train.config import TrainConfig

    u = torch.rand(100_000, generator=torch.Generator().manual_seed(0))
    uniform, high = TrainConfig().level_of(u, 8), TrainConfig(level_power=0.8).level_of(u, 8)
    assert 0 <= high.min() and high.max() < 7
    assert abs((uniform > 14 / 3).float().mean() - 1 / 3) < 0.01
    assert abs((high > 14 / 3).float().mean() - (1 - (2 / 3) ** 1.25)) < 0.01
    with pytest.raises(ValueError, match="level_power"):
        TrainConfig(level_power=0).level_of(u, 8)


def test_amp_auto_never_emulates_bf16():
    from liccodec.nn.layers import native_bf16
    from liccodec.train.loop import resolve_amp

    assert resolve_amp(torch.device("cpu"), "auto") == ("bf16" if native_bf16() else "none")
    with pytest.raises(ValueError):
        resolve_amp(torch.device("cpu"), "fp16")


def test_chain_stages_totals():
    from liccodec.train.export import chain_stages

    a = {"steps": 100, "wall_clock_hours": 1.0, "sha256": "ab"}
    b = {"steps": 50, "wall_clock_hours": 0.5, "recipe": "r.toml"}
    two = chain_stages(dict(a), dict(b))
    assert (two["steps"], two["wall_clock_hours"], two["recipe"]) == (150, 1.5, "r.toml")
    three = chain_stages({**two, "sha256": "cd"}, {"steps": 10, "wall_clock_hours": 0.25})
    assert three["steps"] == 160 and [s["steps"] for s in three["stages"]] == [100, 50, 10]
    assert [s.get("sha256") for s in three["stages"]] == ["ab", "cd", None]


def test_plot_training_groups_by_lambda(tmp_path):
    pytest.importorskip("matplotlib")
    import json

    from liccodec.train.plot import plot_run

    log = tmp_path / "val.jsonl"
    recs = [{"step": 10, "level1": {"bpp_est": 0.5, "psnr": 30.0}},  # an old record: no lambda
            {"step": 20, "level2": {"lambda": 0.0035, "bpp_est": 0.4, "psnr_est": 30.5, "bpp": 0.41, "psnr": 30.4}}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    plot_run(log, tmp_path / "curve.png")
    plot_run(tmp_path, tmp_path / "curve2.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000 and (tmp_path / "curve2.png").exists()


def test_export_records_where_a_run_trained(data_dir, tmp_path):
    """`lic export --hardware/--data`: a run trained elsewhere (a lent GPU, another data set)
    keeps that in its training record; without them the record is this machine's. The file
    is readable by all (safetensors writes it for its owner alone)."""
    import json

    from click.testing import CliRunner

    from liccodec.cli.main import main

    Trainer(recipe(data_dir, tmp_path / "run", 2), "cpu").run(progress=False)
    ck, out = tmp_path / "run" / "last.pt", tmp_path / "models"
    run = lambda *a: CliRunner().invoke(main, ["export", str(ck), "--out", str(out), *a],  # noqa: E731
                                        catch_exceptions=False)
    assert run("--id", "msh.here").exit_code == 0
    assert run("--id", "msh.gpu", "--hardware", "NVIDIA H200 (CUDA)", "--data", "516 photos, JPEG").exit_code == 0
    entries = json.loads((out / "manifest.json").read_text())["models"]
    here, gpu = entries["msh.here"]["training"], entries["msh.gpu"]["training"]
    assert (gpu["hardware"], gpu["data"], gpu["steps"]) == ("NVIDIA H200 (CUDA)", "516 photos, JPEG", 2)
    assert here["hardware"] != gpu["hardware"] and here["data"].startswith("shared/data/train")
    assert (out / "msh.gpu.safetensors").stat().st_mode & 0o777 == 0o644  # shipped: readable by all
