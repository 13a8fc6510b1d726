"""The two-branch latent codec (``liccodec.latent.twobranch``): the HR latent coded first in
charm's slices, then the LR latent's slices, each reading the decoded HR latent; one stream,
integer parameters on both sides."""
import numpy as np
import pytest
import torch

from liccodec.nn.octave import pack, unpack

from charm_zoo import stream_steps


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _exported(model):
    """``model`` with its exact parts exported and loaded (what coding reads)."""
    model.latent.load_exact(model.latent.export_exact())
    return model.eval()


@pytest.fixture()
def net(tiny_builder):
    return _exported(tiny_builder[0](arch="twobranch"))


def test_the_stream_holds_z_z_low_the_hr_slices_then_the_lr_slices(net):
    """The order of docs/models/twobranch.md: both hyper-latents, y's slices, y_low's slices,
    all steps of one stream."""
    lat, ex = net.latent, net.latent.exact
    with torch.no_grad():
        y = net.g_a(_image(128, 192, 1))
    z_pos = (128 // 64) * (192 // 64)
    expected = [(ex.z_tables, lat.N * z_pos), (ex.z_low_tables, lat.N_low * z_pos)]
    expected += [(ex.y_tables, lat.M // lat.slices * 16 * z_pos)] * lat.slices
    expected += [(ex.y_tables, lat.M_low // lat.slices_low * 4 * z_pos)] * lat.slices_low
    assert stream_steps(net, y, 2350) == expected


def _decoded(model, y_high, y_low, q=2000):
    """(HR symbols, HR means, LR symbols, LR means) that the decoder rebuilds."""
    streams, _ = model.latent.compress(pack(y_high, y_low), q)
    sym, means = model.latent.decode_latents(streams, (2, 2), q)
    return (*unpack(sym, model.latent.M), *unpack(means, model.latent.M))


def _zero_last(nets) -> None:
    for m in nets:
        torch.nn.init.zeros_(m[-1].weight)
        torch.nn.init.zeros_(m[-1].bias)


def test_the_hr_latent_conditions_the_lr_latent_and_not_the_reverse(net, tiny_builder):
    """The HR latent is coded first: its symbols and means do not depend on the LR latent.
    The LR latent's means depend on the conditional information (silencing the conditioning
    network changes them, and nothing of the HR latent); with the LR slice networks' last
    layers at zero (a fresh model) the conditioning changes nothing."""
    with torch.no_grad():
        y_high, y_low = unpack(net.g_a(_image(128, 128, 4)), net.latent.M)
    a = _decoded(net, y_high, y_low)
    b = _decoded(net, y_high, -y_low)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    silent = tiny_builder[0](arch="twobranch")  # the same weights (the same seed)
    _zero_last([silent.latent.cond])
    c = _decoded(_exported(silent), y_high, y_low)
    assert torch.equal(a[0], c[0]) and torch.equal(a[2], c[2]) and not torch.equal(a[3], c[3])
    _zero_last(net.latent.cc_low)
    _zero_last(silent.latent.cc_low)
    assert torch.equal(_decoded(_exported(net), y_high, y_low)[3], _decoded(_exported(silent), y_high, y_low)[3])


def test_training_rates_follow_the_same_dependencies(tiny_builder):
    """In training's forward, too: the HR latent's and z's likelihoods ignore the LR latent,
    the LR latent's likelihoods read the HR latent."""
    model = tiny_builder[0](arch="twobranch").eval()
    with torch.no_grad():
        y_high, y_low = unpack(model.g_a(_image(128, 128, 5)), model.latent.M)
        level = torch.tensor([1.3])
        a = model.latent(pack(y_high, y_low), level).likelihoods
        b = model.latent(pack(y_high, 2 * y_low), level).likelihoods
        c = model.latent(pack(1.5 * y_high, y_low), level).likelihoods
    assert set(a) == {"y", "z", "y_low", "z_low"}
    assert torch.equal(a["y"], b["y"]) and torch.equal(a["z"], b["z"])
    assert not torch.equal(a["y_low"], c["y_low"])


def test_exact_state_round_trips_and_is_integer(net):
    """Everything that sets a coder parameter ships as integers; the exact state written
    back is the state read."""
    t = net.latent.export_exact()
    for k, v in t.items():
        if not k.startswith(("exact.y_tables.pmf", "exact.z_tables.pmf", "exact.z_low_tables.pmf")):
            assert not v.is_floating_point(), k
    back = net.latent.exact_cls.from_tensors(t).to_tensors()
    assert back.keys() == t.keys()
    assert all(torch.equal(back[k], t[k].to(back[k].dtype)) for k in t)
    assert len(net.latent.exact.cc_low) == net.latent.slices_low


def test_a_quality_map_is_refused(net):
    with torch.no_grad():
        y = net.g_a(_image(64, 64, 2))
    with pytest.raises(ValueError, match="cannot code a quality per position"):
        net.latent.compress(y, 2000, qmap=np.full((4, 4), 2000))
