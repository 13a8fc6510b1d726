"""The octave codec (arch ``octave``): HR and LR latents from octave transforms, coded z,
z_low, y_low, y with the LR latent refining the HR latent's parameters (CRPE), no context
model. Warm-started from a shipped charm model, its HR side is that charm's mean-scale
hyperprior exactly; files round-trip through ``lic`` like every architecture's."""
import numpy as np
import pytest
import torch
from PIL import Image

from liccodec.imageio import to_tensor
from liccodec.models import get_arch
from liccodec.nn.octave import pack, unpack

from charm_zoo import (CHARM_MSE, REPO, Z_PRIOR, assert_round_trips_through_lic_without_roi, image, needs_charm_mse,
                       shapes, stream_steps, warm)

#: what octave adds to the mean-scale hyperprior of charm (msh): the transforms' LR sides, the
#: LR latent's gains, hyper-analysis and -synthesis and z prior, and CRPE
BLOCKS = ("g_a.low.", "g_s.low.", "latent.h_a_low.", "latent.h_s_low.", "latent.entropy_bottleneck_low.",
          "latent.gain_low.", "latent.hyper_gain_low.", "latent.crpe_up.", "latent.crpe.")
Q = (1000, 2350, 3000)


def _exported(model):
    """``model`` with its exact parts exported and loaded (what coding reads)."""
    model.latent.load_exact(model.latent.export_exact())
    return model.eval()


def test_octave_is_msh_plus_its_low_resolution_side(tiny_builder):
    """Name for name and shape for shape, the model is the msh (charm without slices) of its
    N, M and lambdas plus the LR side and CRPE; nothing of charm's slices or residual prediction."""
    _, cfgs = tiny_builder
    octave, msh = shapes(get_arch("octave").build(**cfgs["octave"])), shapes(get_arch("msh").build(**cfgs["msh"]))
    extra = set(octave) - set(msh)
    assert extra and all(k.startswith(BLOCKS) for k in extra), sorted(k for k in extra if not k.startswith(BLOCKS))
    assert {k: v for k, v in octave.items() if k in msh} == msh
    assert not any(k.startswith(("latent.cc.", "latent.lrp.")) for k in octave)


def test_warm_started_from_charm_its_hr_side_is_charms_hyperprior(charm_file):
    """Step 0 of ``init = charm``: only the LR side and CRPE start fresh; x_hat and the HR
    latent's and z's likelihoods are those of msh warm-started from the same file, bit for
    bit; and the exported coder decodes the HR latent msh's coder gives, whatever the LR
    latent holds."""
    octave, fresh = warm("octave", charm_file)
    msh, _ = warm("msh", charm_file)
    params = dict(octave.named_parameters())
    assert all(k.startswith(BLOCKS) or (k.startswith(Z_PRIOR) and k not in params) for k in fresh), fresh
    assert any(k.startswith(BLOCKS) for k in fresh)
    x, level = image(128, 128), torch.tensor([0.8])
    with torch.no_grad():
        a, b = msh.eval()(x, level), octave.eval()(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    assert torch.equal(a.likelihoods["y"], b.likelihoods["y"]) and torch.equal(a.likelihoods["z"], b.likelihoods["z"])
    assert set(b.likelihoods) == {"y", "z", "y_low", "z_low"}
    for m in (msh, octave):
        _exported(m)
    with torch.no_grad():
        y = octave.g_a(image(128, 128, seed=3))
    assert torch.equal(unpack(y, octave.latent.M)[0], msh.g_a(image(128, 128, seed=3)))
    for q in Q:
        _, y_msh = msh.latent.compress(unpack(y, octave.latent.M)[0], q)
        streams, y_oct = octave.latent.compress(y, q)
        decoded = octave.latent.decompress(streams, (2, 2), q)
        assert torch.equal(decoded, y_oct) and torch.equal(unpack(decoded, octave.latent.M)[0], y_msh), q


def test_the_stream_holds_z_z_low_y_low_then_y(tiny_builder):
    """The documented order (docs/format.md): both hyper-latents, the LR latent, the HR latent,
    four steps of one stream; no step per slice or per position."""
    net = _exported(tiny_builder[0](arch="octave"))
    lat, ex = net.latent, net.latent.exact
    with torch.no_grad():
        y = net.g_a(image(128, 192))
    steps = stream_steps(net, y, 2350)
    z_positions = (128 // 64) * (192 // 64)
    assert steps == [(ex.z_tables, lat.N * z_positions), (ex.z_low_tables, lat.N_low * z_positions),
                     (ex.y_tables, lat.M_low * 4 * z_positions), (ex.y_tables, lat.M * 16 * z_positions)]


def test_the_low_resolution_latent_sets_the_high_resolution_parameters(tiny_builder):
    """CRPE at work: the HR latent's decoded means change with the LR latent alone; with
    CRPE's last layer at zero (a fresh model) they do not, and the HR latent is coded from z
    alone, as by a mean-scale hyperprior."""
    net = _exported(tiny_builder[0](arch="octave"))
    with torch.no_grad():
        y_high, y_low = unpack(net.g_a(image(128, 128, seed=4)), net.latent.M)

    def high_means(model, low):
        streams, _ = model.latent.compress(pack(y_high, low), 2000)
        return unpack(model.latent.decode_latents(streams, (2, 2), 2000)[1], model.latent.M)[0]

    assert not torch.equal(high_means(net, y_low), high_means(net, -y_low))
    torch.nn.init.zeros_(net.latent.crpe[-1].weight)
    torch.nn.init.zeros_(net.latent.crpe[-1].bias)
    net = _exported(net)
    assert torch.equal(high_means(net, y_low), high_means(net, -y_low))


def test_a_file_round_trips_through_lic(tiny, photo, tmp_path):
    """``lic encode`` / ``lic decode`` with the tiny octave model: the decoder's latents are the
    encoder's, and the picture is the one ``liccodec.decode`` gives; region-of-interest
    coding is refused (the LR latent has no place in a map on y's grid)."""
    assert_round_trips_through_lic_without_roi("octave.tiny", photo, tmp_path)


def _recipe():
    from liccodec.train.config import Recipe

    return Recipe.load(REPO / "docs" / "octave.toml")


def test_the_recipe_starts_from_charm_mse_with_its_lambdas():
    from liccodec.train.warmstart import source_lambdas

    r = _recipe()
    assert r.arch == "octave" and r.train.init == "models/charm.mse.safetensors"
    cfg = get_arch("octave").config(**r.model)
    assert (cfg.N, cfg.M, cfg.synthesis) == (128, 192, ())
    if not CHARM_MSE.exists():
        pytest.skip(f"{CHARM_MSE} not present")
    assert list(cfg.lambdas) == source_lambdas(CHARM_MSE)


@pytest.mark.slow
@needs_charm_mse
def test_the_real_size_model_starts_at_charm_mses_hyperprior():
    """The recipe's model warm-started from charm.mse: its picture and HR rate are those of
    charm.mse's transforms and mean-scale hyperprior (msh warm-started from charm.mse), and
    the LR latent starts nearly free (under 1% of the bits)."""
    from liccodec.train.warmstart import warm_start

    r = _recipe()
    octave = get_arch("octave").build(**r.model)
    msh = get_arch("msh").build(**{k: r.model[k] for k in ("N", "M", "lambdas")})
    warm_start(octave, CHARM_MSE)
    warm_start(msh, CHARM_MSE)
    kodim = REPO.parent / "shared" / "data" / "kodak" / "kodim23.png"
    x = to_tensor(np.asarray(Image.open(kodim).convert("RGB"))[:256, :384]) if kodim.exists() else image(256, 384)
    with torch.no_grad():
        a, b = msh.eval()(x, torch.tensor([4.0])), octave.eval()(x, torch.tensor([4.0]))
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.likelihoods["y"], b.likelihoods["y"])
    bits = {k: (-torch.log2(v)).sum().item() for k, v in b.likelihoods.items()}
    assert (bits["y_low"] + bits["z_low"]) < 0.01 * sum(bits.values()), bits
