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
    a = Trainer(recipe(data_dir, tmp_path / "a", 16), "cpu")
    a.run(progress=False)
    b = Trainer(recipe(data_dir, tmp_path / "b", 7), "cpu")
    b.run(progress=False)
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
