"""DCAE (arch ``dcae``): charm plus a dictionary cross-attention in the slice networks. The
dictionary is one flag, a warm start from a shipped charm model is that model exactly, and
files round-trip through ``lic`` like every architecture's."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import liccodec
from liccodec.container import read_header
from liccodec.imageio import pad_to_multiple, to_tensor
from liccodec.latent.channelwise import ChannelConditional
from liccodec.latent.dictionary import DictionaryChannel
from liccodec.models import get_arch

from charm_zoo import (assert_charm_plus, assert_starts_as, image, needs_charm_mse, recipe_config, recipe_start,
                       shapes, warm)

#: what dcae adds to charm: the dictionary, the attention sites, and each slice network's
#: first-layer weights on the attention's output
BLOCKS = ("latent.dictionary", "latent.attn.", *(f"latent.cc.{i}.0.extra" for i in range(6)))


def test_the_dictionary_is_one_flag(tiny_builder):
    """Off, dcae is charm name for name and shape for shape; on, charm plus its blocks."""
    _, cfgs = tiny_builder
    build = lambda **flags: get_arch("dcae").build(**{**cfgs["dcae"], **flags})  # noqa: E731
    off = build(dictionary=False)
    assert type(off.latent) is ChannelConditional
    assert shapes(off) == shapes(get_arch("charm").build(**cfgs["charm"]))
    on = build()
    assert isinstance(on.latent, DictionaryChannel)
    assert_charm_plus(on, cfgs["charm"], BLOCKS)
    with pytest.raises(ValueError, match="does not split into 3 heads"):
        build(dict_heads=3)


def test_warm_started_from_charm_it_is_that_charm(charm_file):
    """Step 0 of ``init = charm``: only the new blocks start fresh, every output (the rate
    estimate included) is charm's bit for bit, and so are the exported model's streams."""
    charm, _ = warm("charm", charm_file)
    dcae, fresh = warm("dcae", charm_file)
    assert_starts_as(charm, dcae, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))
    for m in (charm, dcae):
        m.latent.load_exact(m.latent.export_exact())
    with torch.no_grad():
        y = charm.g_a(image(128, 128, seed=3))
    for q in (1000, 2350, 3000):
        (mine, y_mine), (theirs, y_theirs) = dcae.latent.compress(y, q), charm.latent.compress(y, q)
        assert mine == theirs and torch.equal(y_mine, y_theirs), q


def test_a_file_round_trips_through_lic(tiny, photo, tmp_path):
    """``lic encode`` / ``lic decode`` with the tiny dcae: the decoder's latents are the
    encoder's, and the picture is the one ``liccodec.decode`` and the model itself give."""
    from liccodec.cli.main import main
    from liccodec.weights import load_model

    png = tmp_path / "photo.png"
    Image.fromarray(photo).save(png)
    run = lambda *a: CliRunner().invoke(main, [str(v) for v in a], catch_exceptions=False)  # noqa: E731
    r = run("encode", png, "-m", "dcae.tiny", "-q", "2.5")
    assert r.exit_code == 0, r.output
    data = png.with_suffix(".lic").read_bytes()
    assert read_header(data).model_id == "dcae.tiny"
    r = run("decode", png.with_suffix(".lic"), "-o", tmp_path / "back.png")
    assert r.exit_code == 0, r.output
    back = np.asarray(Image.open(tmp_path / "back.png"))
    assert back.shape == photo.shape
    assert np.array_equal(back, np.asarray(liccodec.decode(data)))
    net = load_model("dcae.tiny")
    x = pad_to_multiple(to_tensor(photo), 64)
    with torch.no_grad():
        streams, y_hat = net.latent.compress(net.g_a(x), 2500)
    assert torch.equal(net.latent.decompress(streams, (2, 2), 2500), y_hat)


def test_the_recipe_starts_from_charm_mse_with_its_lambdas():
    cfg = recipe_config("dcae.toml", "dcae")
    assert cfg.dictionary


@pytest.mark.slow
@needs_charm_mse
def test_the_real_size_model_starts_at_charm_mse():
    """The recipe's model warm-started from charm.mse is charm.mse: outputs and rate estimate."""
    charm, dcae, fresh = recipe_start("dcae.toml")
    assert_starts_as(charm, dcae, fresh, BLOCKS, image(128, 128, seed=2), torch.tensor([4.0]))
