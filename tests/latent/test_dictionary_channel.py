"""The dictionary-based entropy model (DCAE): charm's slices plus an exact cross-attention over
a learned dictionary; it starts as charm, and its integer path codes what the float one estimates."""
import itertools

import torch

from liccodec.fixedpoint import ACT_BITS
from liccodec.latent.base import record_gaussians
from liccodec.latent.dictionary import DictionaryChannel
from liccodec.models import get_arch


def _image(seed: int, size: int = 256) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _exported(model):
    """``model`` with its exact state exported and loaded, as coding needs it."""
    model.latent.load_exact(model.latent.export_exact())
    return model


def test_with_untrained_attention_weights_it_is_exactly_charm(tiny_builder):
    """The slice networks' weights on the attention's output start at zero: a dcae latent
    given charm's weights is that charm, in the float forward (rate estimate included) and in
    the exported integer path, whose streams are charm's byte for byte."""
    build_tiny, cfgs = tiny_builder
    charm = build_tiny(arch="charm")
    dcae = get_arch("dcae").build(**cfgs["dcae"]).eval()
    missing, unexpected = dcae.load_state_dict(charm.state_dict(), strict=False)
    assert not unexpected and missing
    assert all(k.startswith(("latent.dictionary", "latent.attn.")) or k.endswith(".0.extra") for k in missing)
    x, level = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)), torch.tensor([0.3, 1.7])
    with torch.no_grad():
        a, b = charm(x, level), dcae(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    for k in ("y", "z"):
        assert torch.equal(a.likelihoods[k], b.likelihoods[k])
    _exported(charm), _exported(dcae)
    with torch.no_grad():
        y = charm.g_a(_image(2, 128))
    for q in (1000, 2350, 3000):
        (mine, y_mine), (theirs, y_theirs) = dcae.latent.compress(y, q), charm.latent.compress(y, q)
        assert mine == theirs and torch.equal(y_mine, y_theirs), q


def _means(model, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """The means of y's Gaussians in the float forward (eval: rounding), gained domain."""
    with torch.no_grad(), record_gaussians() as rec:
        model(x, level)
    return torch.cat([m for m, _ in rec], dim=1)


def test_the_integer_path_codes_what_the_float_one_estimates(tiny_builder):
    """With an attention that matters (its weights in the slice networks woken), the exact
    path's means differ from the float forward's no more than charm's own integer networks
    make them differ (the same model with the attention's weights at zero), a small fraction
    of what the attention moves them by; and the real bytes are the float estimate within 1%."""
    build_tiny, _ = tiny_builder
    x = _image(3)
    gaps, moved = {}, {}
    for woken in (False, True):
        model = build_tiny(arch="dcae")
        assert isinstance(model.latent, DictionaryChannel)
        with torch.no_grad():
            for cc in model.latent.cc:
                cc[0].extra.normal_(0, 0.5, generator=torch.Generator().manual_seed(7)).mul_(woken)
        _exported(model)
        for q in (1000, 2500, 3000):
            level = torch.tensor([(q - 1000) / 1000])
            streams = model.compress(x, q)
            _, means_q = model.latent.decode_latents(streams, (4, 4), q)
            float_means = _means(model, x, level)
            gaps[woken, q] = (means_q.double() / 2**ACT_BITS - float_means).abs().mean().item()
            moved[woken, q] = float_means
            coded = sum(len(v) for v in streams.values())
            with torch.no_grad():
                est = sum((-torch.log2(lik)).sum().item() for lik in model(x, level).likelihoods.values()) / 8
            assert abs(coded - est) <= 0.01 * est + 8 * len(streams), (woken, q, coded, est)
    for q in (1000, 2500, 3000):
        effect = (moved[True, q] - moved[False, q]).abs().mean().item()
        assert gaps[True, q] <= 1.25 * gaps[False, q] + 1e-3 and gaps[True, q] < 0.2 * effect, (q, gaps, effect)


def test_the_exact_state_round_trips_and_checks_the_slices(tiny_builder):
    build_tiny, _ = tiny_builder
    model = _exported(build_tiny(arch="dcae"))
    ex = model.latent.exact
    again = type(ex).from_tensors(ex.to_tensors())
    assert len(again.attn) == 3 and again.to_tensors().keys() == ex.to_tensors().keys()
    x = _image(4, 128)
    with torch.no_grad():
        y = model.g_a(x)
    streams, y_hat = model.latent.compress(y, 2000)
    model.latent.exact = again
    assert torch.equal(model.latent.decompress(streams, (2, 2), 2000), y_hat)
    model.latent.exact = type(ex)(**{**vars(ex), "attn": ex.attn[:2]})
    try:
        model.latent.decompress(streams, (2, 2), 2000)
    except ValueError as e:
        assert "2 attention sites" in str(e)
    else:
        raise AssertionError("a missing attention site was not noticed")


def test_checkpoint_names_extend_charms():
    """charm's state (names, order, shapes) comes first, then the dictionary and the sites;
    only the slice networks' first layers gain a tensor (their weights on the attention)."""
    state = DictionaryChannel(8, 12, 3, 3, 16, 16, 16, 2, 4, lrp=True).state_dict()
    groups = [(k, len(list(g))) for k, g in itertools.groupby(k.split(".")[0] for k in state)]
    assert groups == [("h_a", 6), ("h_s", 6), ("entropy_bottleneck", 20), ("cc", 21), ("dictionary", 1),
                      ("attn", 3 * 11), ("gain", 2), ("hyper_gain", 2), ("lrp", 18)]
    assert [k for k in state if k.startswith("cc.") and k.endswith("extra")] == [f"cc.{i}.0.extra" for i in range(3)]
