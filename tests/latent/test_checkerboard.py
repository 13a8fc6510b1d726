"""The checkerboard + channel-group entropy model (arch ``elic``): causal passes, starts as
the hyperprior, decodes exactly, warm-starts from a shipped hyperprior or charm model."""
from pathlib import Path

import pytest
import torch
from PIL import Image

import liccodec
from liccodec.latent.checkerboard import CheckerboardConv2d, anchor_mask
from liccodec.models import get_arch

REPO = Path(__file__).resolve().parents[2]


def _image(h: int = 128, w: int = 128, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---- the mask ------------------------------------------------------------------------------
def test_anchors_are_the_even_squares_of_the_whole_latent():
    a = anchor_mask(5, 6)
    assert a[0, 0] and not a[0, 1] and not a[1, 0] and a[1, 1]
    assert torch.equal(a, torch.tensor([[(i + j) % 2 == 0 for j in range(6)] for i in range(5)]))
    # a window at an odd offset has its colours swapped: the parity belongs to the whole
    # latent, so the codec builds the mask there, never per tile
    assert torch.equal(anchor_mask(12, 12)[3:9, 4:10], ~anchor_mask(6, 6))


def test_the_spatial_context_reads_the_other_colour_only():
    """An impulse at an anchor reaches non-anchors only, and the other way round: so from a
    non-anchor the context sees anchors only, and anchors (whose own context is zero) never
    see an anchor of their own pass."""
    torch.manual_seed(0)
    sp = CheckerboardConv2d(1, 3, 5)
    nn_bias = sp.bias.detach().view(1, -1, 1, 1)
    a = anchor_mask(9, 9)
    for i, j in ((4, 4), (4, 5)):  # an anchor, a non-anchor
        x = torch.zeros(1, 1, 9, 9)
        x[0, 0, i, j] = 1.0
        with torch.no_grad():
            hit = (sp(x) - nn_bias).abs().sum(1)[0] > 0
        assert hit.any()
        assert not (hit & (a if a[i, j] else ~a)).any(), (i, j)
        di, dj = torch.nonzero(hit, as_tuple=True)
        assert (di - i).abs().max() <= 2 and (dj - j).abs().max() <= 2
    # the exported integer layer carries the mask: its even-offset taps are zero
    (layer,) = sp.to_integer(relu=False)
    d = torch.arange(5) - 2
    even = (d.view(-1, 1) + d.view(1, -1)) % 2 == 0
    assert not layer.weight[..., even].any() and layer.weight[..., ~even].any()


def test_training_forward_is_causal(tiny_builder):
    """With the hyperprior's output held fixed, changing one latent value changes, in its own
    group, only its own likelihood and (for an anchor) those of the non-anchors whose 5x5
    window holds it: anchors never depend on their group, non-anchors never on another
    non-anchor of their group, and no group on a later one."""
    build_tiny, _ = tiny_builder
    lat = build_tiny(arch="elic").latent
    gen = torch.Generator().manual_seed(4)
    y = torch.randn(1, lat.M, 8, 8, generator=gen) * 4
    scales = torch.rand(1, lat.M, 8, 8, generator=gen) * 3 + 0.5
    means = torch.randn(1, lat.M, 8, 8, generator=gen)
    a = anchor_mask(8, 8)
    with torch.no_grad():
        base = lat._y_forward(y, scales, means)[0]
        for c0, c1 in lat.bounds:
            for i, j in ((3, 3), (3, 4)):  # an anchor, a non-anchor
                moved = y.clone()
                moved[0, c0, i, j] += 3.0
                changed = lat._y_forward(moved, scales, means)[0] != base
                assert not changed[0, :c0].any(), "an earlier group depends on a later one"
                own = changed[0, c0:c1].clone()
                assert own[0, i, j]
                own[0, i, j] = False
                if a[i, j]:
                    ii, jj = torch.nonzero(own.any(0), as_tuple=True)
                    assert len(ii) and not a[ii, jj].any(), "an anchor depends on its own pass"
                    assert (ii - i).abs().max() <= 2 and (jj - j).abs().max() <= 2
                else:
                    assert not own.any(), "a non-anchor's value reached its own group"
                if c1 < lat.M:
                    assert changed[0, c1:].any(), "the next groups do not see this group"


# ---- starting point: the hyperprior -----------------------------------------------------------
def test_untrained_context_is_exactly_the_hyperprior(tiny_builder):
    """Zero-initialised aggregation networks: an elic built on msh weights is that msh model,
    in training's rate estimate and in real coding's latents."""
    build_tiny, cfgs = tiny_builder
    msh = build_tiny(arch="msh")
    elic = get_arch("elic").build(**cfgs["elic"]).eval()
    missing, unexpected = elic.load_state_dict(msh.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("latent.ch.", "latent.sp.", "latent.pa."))
                                              for k in missing)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    level = torch.tensor([0.3, 1.7])
    with torch.no_grad():
        a, b = msh(x, level), elic(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    for k in ("y", "z"):
        assert torch.equal(a.likelihoods[k], b.likelihoods[k])
    for net in (msh, elic):
        net.latent.load_exact(net.latent.export_exact())
    with torch.no_grad():
        y = msh.g_a(x[:1])
    for q in (1000, 2350):
        assert torch.equal(msh.latent.compress(y, q)[1], elic.latent.compress(y, q)[1])


# ---- exact coding -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_random_tiny_model_decodes_exactly(tiny_builder, seed):
    """Random context networks (not zero): the decoder rebuilds the encoder's latents at
    several qualities, whole or tile by tile, on a latent that is not square."""
    build_tiny, _ = tiny_builder
    model = build_tiny(seed=seed, arch="elic")
    lat = model.latent
    lat.load_exact(lat.export_exact())
    msh = build_tiny(seed=seed, arch="msh")
    msh.latent.load_exact(msh.latent.export_exact())
    with torch.no_grad():
        y = model.g_a(_image(192, 128, seed=seed + 3))
    hw = (y.shape[2] // 4, y.shape[3] // 4)
    for q in (1000, 1500, 2350, 3000):
        streams, y_hat = lat.compress(y, q)
        assert torch.equal(lat.decompress(streams, hw, q), y_hat), q
        assert torch.equal(lat.decompress(streams, hw, q, tile=4), y_hat), q
        # the context moves the means: not the hyperprior's latents
        assert not torch.equal(y_hat, msh.latent.compress(y, q)[1])


def test_files_round_trip_through_the_public_api(tiny_models_dir, monkeypatch, photo):
    """liccodec.encode/decode with an elic model (the torch decoder: the numpy runtime does
    not know this architecture); one rANS stream after the hyper-latent."""
    from liccodec.container import read_header

    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    data = liccodec.encode(Image.fromarray(photo), model="elic.tiny", quality=2.0)
    assert set(read_header(data).streams) <= {"ans", "esc"}
    img = liccodec.decode(data)
    assert img.size == (photo.shape[1], photo.shape[0])


# ---- warm starts --------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["msh", "charm"])
def test_warm_start_from_an_exported_model(tiny_builder, tmp_path, source):
    """Shipped msh or charm weights load into elic's transforms, gains and hyperprior; the
    context networks start fresh; the model then is the hyperprior the same file gives msh."""
    from liccodec.train.export import export_module
    from liccodec.train.warmstart import warm_start

    build_tiny, cfgs = tiny_builder
    path = export_module(build_tiny(arch=source), source, cfgs[source], f"{source}.tiny", tmp_path)
    elic = get_arch("elic").build(**cfgs["elic"])
    fresh = warm_start(elic, path)
    assert any(k.startswith("latent.pa.") for k in fresh)
    params = dict(elic.named_parameters())
    # besides the context networks, only the z prior's derived buffers (tables, constants)
    assert all(k.startswith(("latent.ch.", "latent.sp.", "latent.pa."))
               or (k.startswith("latent.entropy_bottleneck.") and k not in params) for k in fresh), fresh
    msh = get_arch("msh").build(**cfgs["msh"])
    warm_start(msh, path)
    x = _image(64, 64)
    with torch.no_grad():
        a, b = msh.eval()(x, torch.tensor([0.8])), elic.eval()(x, torch.tensor([0.8]))
    assert torch.equal(a.x_hat, b.x_hat)
    assert torch.equal(a.likelihoods["y"], b.likelihoods["y"])


def test_the_recipe_warm_starts_from_charm_mse_with_its_lambdas():
    """docs/elic.toml builds an elic model with charm.mse's lambdas and starts from its weights."""
    from liccodec.train.config import Recipe
    from liccodec.train.warmstart import source_lambdas

    recipe = Recipe.load(REPO / "docs" / "elic.toml")
    assert recipe.arch == "elic" and recipe.train.init == "models/charm.mse.safetensors"
    cfg = get_arch("elic").config(**recipe.model)
    assert sum(cfg.groups) == cfg.M and len(set(cfg.groups)) > 1
    charm = REPO / recipe.train.init
    if not charm.exists():
        pytest.skip(f"{charm} not present")
    assert list(cfg.lambdas) == source_lambdas(charm)
