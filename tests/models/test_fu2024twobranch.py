"""The two-branch codec (arch ``twobranch``): HR and LR latents from two branches of the
transforms, the HR latent coded first in charm's slices, the LR latent's slices conditioned
on it. Warm-started from a shipped charm model, it is that charm at step 0 (picture, HR and z
rates, and the exported coder's HR latent); files round-trip through ``lic``."""
import tomllib

import numpy as np
import torch
from PIL import Image

from liccodec.imageio import to_tensor
from liccodec.models import get_arch
from liccodec.nn.octave import unpack

from charm_zoo import (CHARM_MSE, REPO, assert_charm_plus, assert_round_trips_through_lic_without_roi, image,
                       needs_charm_mse, recipe_config, warm)

#: what twobranch adds to charm: the transforms' LR sides and the LR latent's gains, hyper-
#: analysis and -synthesis, z prior, conditioning network and slice networks
BLOCKS = ("g_a.low.", "g_s.low.", "latent.h_a_low.", "latent.h_s_low.", "latent.entropy_bottleneck_low.",
          "latent.gain_low.", "latent.hyper_gain_low.", "latent.cond.", "latent.cc_low.")
Q = (1000, 2350, 3000)


def _exported(model):
    model.latent.load_exact(model.latent.export_exact())
    return model.eval()


def test_twobranch_is_charm_plus_its_low_resolution_side(tiny_builder):
    _, cfgs = tiny_builder
    assert_charm_plus(get_arch("twobranch").build(**cfgs["twobranch"]), cfgs["charm"], BLOCKS)


def _assert_starts_as_charm(charm, model, fresh, x, level):
    """Only the LR side was left fresh; x_hat and the HR latent's and z's likelihoods are
    charm's bit for bit; the LR latent's are there too."""
    params = dict(model.named_parameters())
    assert all(k.startswith(BLOCKS) or (k.startswith("latent.entropy_bottleneck.") and k not in params)
               for k in fresh), fresh
    assert any(k.startswith(BLOCKS) for k in fresh)
    with torch.no_grad():
        a, b = charm.eval()(x, level), model.eval()(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    assert torch.equal(a.likelihoods["y"], b.likelihoods["y"]) and torch.equal(a.likelihoods["z"], b.likelihoods["z"])
    assert set(b.likelihoods) == {"y", "z", "y_low", "z_low"}
    return b


def test_warm_started_from_charm_it_is_that_charm(charm_file):
    """Step 0 of ``init = charm`` (a tiny exported charm): the float model gives charm's
    picture and rates, and the exported coder decodes, for the HR latent, the y_hat that
    charm's coder gives (slices and residual prediction included), whatever the LR latent holds."""
    model, fresh = warm("twobranch", charm_file)
    charm, _ = warm("charm", charm_file)
    _assert_starts_as_charm(charm, model, fresh, image(128, 128), torch.tensor([0.8]))
    for m in (charm, model):
        _exported(m)
    x = image(128, 128, seed=3)
    with torch.no_grad():
        y = model.g_a(x)
        y_high = unpack(y, model.latent.M)[0]
        assert torch.equal(y_high, charm.g_a(x))
    for q in Q:
        _, y_charm = charm.latent.compress(y_high, q)
        streams, y_two = model.latent.compress(y, q)
        decoded = model.latent.decompress(streams, (2, 2), q)
        assert torch.equal(decoded, y_two)
        assert torch.equal(unpack(decoded, model.latent.M)[0], y_charm), q


@needs_charm_mse
def test_warm_started_from_charm_mse_it_is_charm_mse():
    """The recipe's model from the shipped charm.mse, on a 128x128 crop of a photo: charm.mse's
    picture and HR rates bit for bit, and the LR latent nearly free (under 1% of the bits)."""
    cfg = recipe_config("twobranch.toml", "twobranch")
    from dataclasses import asdict

    full = asdict(cfg)
    model, fresh = warm("twobranch", CHARM_MSE, **full)
    charm, _ = warm("charm", CHARM_MSE, **{k: full[k] for k in ("N", "M", "lambdas", "slices", "hidden", "lrp")})
    kodim = REPO.parent / "shared" / "data" / "kodak" / "kodim23.png"
    x = (to_tensor(np.asarray(Image.open(kodim).convert("RGB"))[128:256, 256:384]) if kodim.exists()
         else image(128, 128))
    out = _assert_starts_as_charm(charm, model, fresh, x, torch.tensor([4.0]))
    bits = {k: (-torch.log2(v)).sum().item() for k, v in out.likelihoods.items()}
    assert bits["y_low"] + bits["z_low"] < 0.01 * sum(bits.values()), bits


def test_the_recipe_is_charm_ctls_training_on_twobranch():
    """docs/twobranch.toml: charm.mse's config plus the LR side, and exactly the [train] table
    of docs/charm.ctl.toml (its equal-budget control) but for the output folder."""
    raw = {n: tomllib.loads((REPO / "docs" / f"{n}.toml").read_text()) for n in ("twobranch", "charm.ctl")}
    ours, ctl = dict(raw["twobranch"]["train"]), dict(raw["charm.ctl"]["train"])
    assert ours.pop("out") == "../runs/twobranch.mse" and ctl.pop("out") == "../runs/charm.ctl"
    assert ours == ctl
    assert {k: v for k, v in raw["twobranch"]["model"].items() if k in raw["charm.ctl"]["model"] and k != "arch"} \
        == {k: v for k, v in raw["charm.ctl"]["model"].items() if k != "arch"}
    get_arch("twobranch").config(**{k: v for k, v in raw["twobranch"]["model"].items() if k != "arch"})
    if CHARM_MSE.exists():
        recipe_config("twobranch.toml", "twobranch")


def test_a_file_round_trips_through_lic(tiny, photo, tmp_path):
    """``lic encode`` / ``lic decode`` with the tiny twobranch model; region-of-interest coding
    is refused (the LR latent has no place in a map on y's grid)."""
    assert_round_trips_through_lic_without_roi("twobranch.tiny", photo, tmp_path)
