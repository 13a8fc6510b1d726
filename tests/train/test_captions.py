"""Training with captions (TrainConfig.captions, a selic model): only captioned photos are
sampled, each crop comes with its photo's caption, the draws are those of an uncaptioned
sampler over the same photos, and a frozen-except-FiLM run changes the FiLM blocks alone."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from liccodec.train.config import Recipe
from liccodec.train.data import CropSampler, read_captions
from liccodec.train.loop import Trainer


@pytest.fixture()
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(6):
        img = np.full((80, 80, 3), 40 * i, np.uint8) + rng.integers(0, 20, (80, 80, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"{i}.png")
    return d


@pytest.fixture()
def captions(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"_about": "test", "train": {"1.png": "grey one", "2.png": "grey two",
                                                             "4.png": "grey four"},
                                "holdout": {"0.png": "held out"}}))
    return path


def test_read_captions_merges_groups_and_skips_notes(captions):
    assert read_captions(captions) == {"1.png": "grey one", "2.png": "grey two", "4.png": "grey four",
                                       "0.png": "held out"}


def test_only_captioned_photos_are_sampled_with_their_captions(data_dir, captions):
    caps = read_captions(captions)
    s = CropSampler(data_dir, seed=3, holdout=3, captions=caps)   # holds out 0.png and 3.png
    assert s.captions == ["grey one", "grey two", "grey four"]
    x, got = s.captioned_batch(16, 32)
    assert x.shape == (16, 3, 32, 32) and set(got) <= {"grey one", "grey two", "grey four"}
    levels = {"grey one": 40, "grey two": 80, "grey four": 160}
    for crop, c in zip(x, got):  # each crop is from the photo its caption names
        assert abs(float(crop.mean()) * 255 - levels[c] - 9.5) < 2
    plain = CropSampler(data_dir, seed=3, holdout=3, captions=caps)
    assert torch.equal(plain.batch(16, 32), x)
    with pytest.raises(ValueError, match="without captions"):
        CropSampler(data_dir, seed=3).captioned_batch(2, 32)


def test_a_selic_step_trains_the_film_blocks_alone(data_dir, captions, tmp_path):
    r = Recipe.from_dict({
        "model": {"arch": "selic", "N": 8, "M": 12, "lambdas": [0.01, 0.05], "slices": 3, "hidden": 8,
                  "embed_dim": 32, "film_hidden": 8},
        "train": {"data": str(data_dir), "val_data": str(data_dir), "out": str(tmp_path / "run"), "batch": 2,
                  "patch_schedule": [[0, 64]], "steps": 2, "warmup": 1, "lr": 1e-2, "val_every": 0,
                  "log_every": 1, "ckpt_every_s": 1e9, "captions": str(captions),
                  "freeze": ["g_a.", "latent.", *(f"g_s.{i}." for i in range(7))]},
    })
    t = Trainer(r, "cpu")
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    seen = []
    forward = type(t.model).forward
    t.model.forward = lambda x, level, captions=None: (seen.append(captions), forward(t.model, x, level, captions))[1]
    t.run(progress=False)
    assert seen and all(c is not None and len(c) == 2 for c in seen)
    after = t.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".film" in k or k.startswith("latent.entropy_bottleneck") for k in changed), changed
    assert any(k.endswith("mlp.2.weight") for k in changed)
