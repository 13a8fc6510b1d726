"""The asymmetric codec (arch ``asym``): charm's entropy model between a heavier analysis
(zero-start MBConv and wavelet attention blocks) and a lighter synthesis (narrow widths,
post-quantization filter). The blocks sit where the config says; warm-started from a charm
model the analysis, the latents and the rate are that model's (and with charm's synthesis
widths, everything is); the decoder costs what the design says; the recipes keep the
equal-budget rule."""
import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import liccodec
from liccodec.container import read_header
from liccodec.models import get_arch
from liccodec.nn.dwan import WaveletAttention
from liccodec.nn.mbconv import MBConv, NormAct
from liccodec.nn.pqf import PostQuantFilter

from charm_zoo import (CHARM_MSE, REPO, Z_PRIOR, assert_charm_plus, assert_starts_as, image, needs_charm_mse,
                       shapes)

#: what asym adds to charm (with charm's synthesis): the analysis' blocks and the filter
BLOCKS = ("g_a.mbconv", "g_a.dwan", "g_s.pqf", "g_s.mbconv")


def _build(cfgs, **kw):
    return get_arch("asym").build(**{**cfgs["asym"], **kw})


def _warm(path, reinit=(), **cfg):
    from liccodec.train.warmstart import warm_start

    model = get_arch("asym").build(**(cfg or get_arch("asym").tiny))
    return model, warm_start(model, path, tuple(reinit))


def test_the_blocks_sit_where_the_config_says(tiny_builder):
    _, cfgs = tiny_builder
    model = _build(cfgs)
    assert [n for n, _ in model.g_a.named_children()] == \
        ["0", "1", "mbconv2", "2", "3", "mbconv4", "dwan4", "4", "5", "mbconv8", "dwan8", "6"]
    assert [n for n, _ in model.g_s.named_children()] == ["pqf", "0", "1", "mbconv8", "2", "3", "4", "5", "6"]
    assert isinstance(model.g_s.pqf, PostQuantFilter) and isinstance(model.g_a.dwan4, WaveletAttention)
    assert sum(isinstance(m, MBConv) for m in model.modules()) == 4
    assert all(isinstance(model.g_s[i], NormAct) for i in (2, 5, 7))  # ln-prelu in the tiny config
    assert [model.g_s[i].out_channels for i in (1, 4, 6, 8)] == [8, 6, 4, 3]
    assert model.y_stride == 16 and model.downsampling == 64
    bare = _build(cfgs, mbconv_ga=[], dwan_ga=[], mbconv_gs=[], pqf=False)
    assert [n for n, _ in bare.g_a.named_children()] == [str(i) for i in range(7)]
    assert [n for n, _ in bare.g_s.named_children()] == [str(i) for i in range(7)]
    for bad, match in [(dict(mbconv_ga=[16]), "mbconv_ga"), (dict(dwan_ga=[1]), "dwan_ga"),
                       (dict(mbconv_gs=[16]), "mbconv_gs"), (dict(synthesis_act="relu"), "synthesis_act"),
                       (dict(synthesis=[8, 4]), "three hidden widths")]:
        with pytest.raises(ValueError, match=match):
            _build(cfgs, **bad)


def test_with_charms_synthesis_it_is_charm_plus_blocks(tiny_builder):
    """IGDN and charm's widths: charm name for name and shape for shape, plus zero-start
    blocks; with no blocks either, exactly charm's state."""
    _, cfgs = tiny_builder
    charm_like = dict(synthesis=[], synthesis_act="igdn")
    assert_charm_plus(_build(cfgs, **charm_like), cfgs["charm"], BLOCKS)
    assert shapes(_build(cfgs, **charm_like, mbconv_ga=[], dwan_ga=[], mbconv_gs=[], pqf=False)) == \
        shapes(get_arch("charm").build(**cfgs["charm"]))


def test_warm_started_from_charm_with_charms_synthesis_it_is_that_charm(charm_file):
    """Every block starts at zero: x_hat and the rate estimate are charm's bit for bit."""
    from charm_zoo import warm

    charm, _ = warm("charm", charm_file)
    asym, fresh = _warm(charm_file, **{**get_arch("asym").tiny, "synthesis": [], "synthesis_act": "igdn"})
    assert_starts_as(charm, asym, fresh, BLOCKS, image(128, 128), torch.tensor([0.8]))


def test_warm_started_from_charm_the_encoder_and_the_rate_are_charms(charm_file):
    """The light synthesis cannot load charm's narrower-layer weights: without ``reinit`` the
    warm start refuses; with it only the blocks and the synthesis' new layers start fresh,
    and y, the latents and every likelihood are charm's bit for bit (what stage 1 trains
    the synthesis behind)."""
    from charm_zoo import warm

    with pytest.raises(ValueError, match=r"g_s\.2\.(weight|bias): shipped shape"):
        _warm(charm_file)
    charm, _ = warm("charm", charm_file)
    asym, fresh = _warm(charm_file, reinit=["g_s."])
    params = dict(asym.named_parameters())
    assert all(k.startswith((*BLOCKS, "g_s.")) or (k.startswith(Z_PRIOR) and k not in params) for k in fresh)
    assert not any(k.startswith("g_s.0.") for k in fresh)  # the first layer keeps charm's shape: loaded
    x, level = image(128, 128), torch.tensor([1.3])
    charm.eval()
    asym.eval()
    with torch.no_grad():
        assert torch.equal(asym.g_a(x), charm.g_a(x))
        a, b = charm(x, level), asym(x, level)
    assert torch.equal(a.y_hat, b.y_hat)
    for k in a.likelihoods:
        assert torch.equal(a.likelihoods[k], b.likelihoods[k]), k


def test_every_block_trains_when_everything_does(tiny_builder):
    """Stage 2 trains the whole model: the zero output layers get a gradient at once, and after
    one step every block parameter does."""
    _, cfgs = tiny_builder
    model = _build(cfgs).train()
    new = {k: p for k, p in model.named_parameters() if k.startswith(BLOCKS)}
    x, level = image(), torch.tensor([1.0])

    def step():
        model.zero_grad(set_to_none=True)
        out = model(x, level)
        rate = sum((-torch.log2(lik)).sum() for lik in out.likelihoods.values())
        (rate + 1e3 * (out.x_hat - x).pow(2).sum()).backward()

    # a PReLU's slope has a gradient only where its input is negative, which a tiny block's
    # few channels may never be on one image
    slopes = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.PReLU)}
    step()
    assert all(new[k].grad.abs().sum() > 0 for k in new if k.endswith(("out.weight", "net.4.weight")))
    torch.optim.SGD(list(new.values()), lr=0.05).step()
    step()
    assert all(p.grad is not None for p in new.values())
    assert all(p.grad.abs().sum() > 0 for k, p in new.items() if k not in slopes)


def test_a_file_round_trips_through_lic(tiny, photo, tmp_path):
    """``lic encode`` / ``lic decode`` with the tiny asym (torch models both ways: the numpy
    runtime knows msh and charm only) give the picture ``liccodec.decode`` gives, and the
    decoder's latents are the encoder's."""
    from liccodec.cli.main import main
    from liccodec.imageio import pad_to_multiple, to_tensor
    from liccodec.weights import load_model

    png = tmp_path / "photo.png"
    Image.fromarray(photo).save(png)
    run = lambda *a: CliRunner().invoke(main, [str(v) for v in a], catch_exceptions=False)  # noqa: E731
    r = run("encode", png, "-m", "asym.tiny", "-q", "2.5")
    assert r.exit_code == 0, r.output
    data = png.with_suffix(".lic").read_bytes()
    assert read_header(data).model_id == "asym.tiny"
    r = run("decode", png.with_suffix(".lic"), "-o", tmp_path / "back.png")
    assert r.exit_code == 0, r.output
    back = np.asarray(Image.open(tmp_path / "back.png"))
    assert back.shape == photo.shape
    assert np.array_equal(back, np.asarray(liccodec.decode(data)))
    net = load_model("asym.tiny")
    x = pad_to_multiple(to_tensor(photo), 64)
    with torch.no_grad():
        streams, y_hat = net.latent.compress(net.g_a(x), 2500)
    assert torch.equal(net.latent.decompress(streams, (2, 2), 2500), y_hat)


def _recipes():
    from liccodec.train.config import Recipe

    return Recipe.load(REPO / "docs" / "asym.stage1.toml"), Recipe.load(REPO / "docs" / "asym.toml")


def test_the_recipes_initialise_the_synthesis_then_train_under_dcaes_table():
    """Stage 1: charm.mse's config and lambdas, its analysis and entropy model frozen, the
    narrower synthesis layers fresh, no rate term. Stage 2: the same model from stage 1's
    export, and the [train] table of docs/dcae.toml (which the control, docs/charm.ctl.toml,
    also runs) but for ``init`` and ``out``: the equal-budget rule."""
    from liccodec.train.config import Recipe
    from liccodec.train.warmstart import source_lambdas

    one, two = _recipes()
    assert one.arch == two.arch == "asym" and one.model == two.model
    cfg = get_arch("asym").config(**one.model)
    assert (cfg.N, cfg.M, cfg.slices, cfg.hidden, cfg.lrp) == (128, 192, 6, 64, True)
    assert cfg.synthesis == (128, 64, 32) and cfg.pqf and cfg.mbconv_ga and not cfg.mbconv_gs
    t = one.train
    assert t.init == "models/charm.mse.safetensors" and t.reinit == ["g_s."]
    assert t.freeze == ["g_a.", "latent."] and t.bpp_weight == 0 and not t.distilling
    assert two.train.init.endswith("asym.stage1.safetensors")
    dcae = dataclasses.asdict(Recipe.load(REPO / "docs" / "dcae.toml").train)
    mine = dataclasses.asdict(two.train)
    assert {k: v for k, v in mine.items() if k not in ("init", "out")} == \
        {k: v for k, v in dcae.items() if k not in ("init", "out")}
    if CHARM_MSE.exists():
        assert list(cfg.lambdas) == source_lambdas(CHARM_MSE)


def test_the_decoder_is_light_and_the_encoder_heavy():
    """Multiply-adds per pixel of the recipe's model against charm.mse's config: g_s (with
    the filter) under 30% of charm's, g_a over 1.25x charm's; the entropy model is charm's."""
    from liccodec.eval.speed import arch_macs

    model = _recipes()[0].model
    charm = {k: v for k, v in model.items() if k in {f.name for f in dataclasses.fields(get_arch("charm").config_cls)}}
    charm["synthesis"] = []
    mine, theirs = arch_macs("asym", model, side=64), arch_macs("charm", charm, side=64)
    assert mine["g_s"] < 0.3 * theirs["g_s"]
    assert mine["g_a"] > 1.25 * theirs["g_a"]
    assert mine["latent.cc"] == theirs["latent.cc"] and mine["latent.h_s"] == theirs["latent.h_s"]


@pytest.mark.slow
@needs_charm_mse
def test_the_real_size_model_codes_charm_mses_latents_at_step_0():
    """The recipe's model warm-started from charm.mse (as stage 1 starts): its analysis, its
    latents and its rate estimate are charm.mse's, bit for bit."""
    from charm_zoo import warm

    model = _recipes()[0].model
    charm, _ = warm("charm", CHARM_MSE, **{k: v for k, v in model.items()
                                            if k in {f.name for f in dataclasses.fields(get_arch("charm").config_cls)}
                                            and k != "synthesis"})
    asym, fresh = _warm(CHARM_MSE, reinit=["g_s."], **model)
    assert not any(k.startswith(("g_a.0", "g_a.6", "latent.h_s", "latent.cc", "g_s.0.", "g_s.1.")) for k in fresh)
    x, level = image(128, 128, seed=2), torch.tensor([4.0])
    with torch.no_grad():
        assert torch.equal(asym.eval().g_a(x), charm.eval().g_a(x))
        a, b = charm(x, level), asym(x, level)
    for k in a.likelihoods:
        assert torch.equal(a.likelihoods[k], b.likelihoods[k]), k
