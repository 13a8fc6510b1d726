"""A warm start that grows the latent (more channels M, more slices, more lambdas) starts
exactly where its source stands: the same reconstruction, and the new channels cost nothing."""
from __future__ import annotations

import pytest
import torch

from liccodec.models.registry import get_arch


def _image(h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    base = torch.linspace(0, 1, w).expand(h, w)
    return (0.6 * base + 0.4 * torch.rand(3, h, w, generator=g)).unsqueeze(0)


def _source_and_wider(tiny_builder, tmp_path, arch):
    """A tiny exported model, loaded, and a config with 5/3 its latent channels (and slices)."""
    from liccodec.train.export import export_module
    from liccodec.train.warmstart import warm_start

    build_tiny, cfgs = tiny_builder
    cfg = cfgs[arch]
    path = export_module(build_tiny(arch=arch), arch, cfg, f"{arch}.tiny", tmp_path)
    source = get_arch(arch).build(**cfg)
    warm_start(source, path)
    # h_s's hidden widths stay the source's (M, 3M/2): only its output grows
    wider = {**cfg, "M": cfg["M"] * 5 // 3, "lambdas": [*cfg["lambdas"], 0.3], "hyper": [cfg["M"], cfg["M"] * 3 // 2]}
    if arch == "charm":
        wider["slices"] = cfg["slices"] * 5 // 3   # the same channels per slice
    return path, source, wider


@pytest.mark.parametrize("arch", ["msh", "charm"])
def test_a_grown_latent_starts_as_its_source(tiny_builder, tmp_path, arch):
    from liccodec.train.warmstart import warm_start

    path, source, wider = _source_and_wider(tiny_builder, tmp_path, arch)
    cfg = tiny_builder[1][arch]
    grown = get_arch(arch).build(**wider)
    with pytest.raises(ValueError, match="does not fit"):
        warm_start(grown, path)
    fresh = warm_start(grown, path, grow_layers=True)
    # only the new slices' networks (zero corrections) and the z prior's derived buffers
    params = dict(grown.named_parameters())
    assert all(k.startswith(("latent.cc.", "latent.lrp.")) or
               (k.startswith("latent.entropy_bottleneck.") and k not in params) for k in fresh), fresh
    M = cfg["M"]
    x = _image(64, 64)
    with torch.no_grad():
        for level in (0.0, 1.3, 2.0):
            a, b = source.eval()(x, torch.tensor([level])), grown.eval()(x, torch.tensor([level]))
            torch.testing.assert_close(b.x_hat, a.x_hat, rtol=0, atol=1e-6)
            torch.testing.assert_close(b.likelihoods["y"][:, :M], a.likelihoods["y"], rtol=0, atol=1e-6)
            assert torch.equal(b.likelihoods["z"], a.likelihoods["z"])
            # the new channels are zero and their scales the smallest: almost certain symbols
            assert b.likelihoods["y"][:, M:].min() > 0.999
    # and they train: g_a's new outputs get a gradient from the distortion
    grown.train()
    out = grown(x, torch.tensor([2.0]))
    ((out.x_hat - x) ** 2).mean().backward()
    assert grown.g_a[6].weight.grad[M:].abs().sum() > 0


@pytest.mark.parametrize("arch", ["msh", "charm"])
def test_a_live_start_draws_as_its_source_with_new_channels_that_carry_values(tiny_builder, tmp_path, arch):
    from liccodec.train.warmstart import warm_start

    path, source, wider = _source_and_wider(tiny_builder, tmp_path, arch)
    M = tiny_builder[1][arch]["M"]
    grown = get_arch(arch).build(**wider)
    warm_start(grown, path, grow_layers=True, live=1.5)
    M2 = wider["M"]
    assert torch.equal(grown.latent.h_s[4].bias[M:M2], torch.full((M2 - M,), 1.5))   # new scales
    assert not grown.latent.h_s[4].bias[M2 + M:].any()                              # new means
    x = _image(64, 64)
    with torch.no_grad():
        a, b = source.eval()(x, torch.tensor([1.0])), grown.eval()(x, torch.tensor([1.0]))
    torch.testing.assert_close(b.x_hat, a.x_hat, rtol=0, atol=1e-6)
    assert torch.equal(b.likelihoods["z"], a.likelihoods["z"])
    # y's new channels carry values (g_a's new outputs kept their random start), priced by
    # their new scales: not the zero start's certain zeros
    assert b.y[:, M:].abs().min() > 0
    assert b.likelihoods["y"][:, M:].max() < 0.999


@pytest.mark.parametrize("field, layer", [("synthesis", "g_s.6"), ("analysis", "g_a.2")])
def test_grown_transforms_start_as_their_source(tiny_builder, tmp_path, field, layer):
    """Wider hidden layers of g_s (its deconvolutions and inverse GDNs) or of g_a (``analysis``,
    charm.ga192) give the same y and draw the same picture at step 0, so the same files, and
    the gradient reaches the new channels' outgoing weights."""
    from liccodec.train.export import export_module
    from liccodec.train.warmstart import warm_start

    build_tiny, cfgs = tiny_builder
    cfg = cfgs["charm"]
    path = export_module(build_tiny(arch="charm"), "charm", cfg, "charm.tiny", tmp_path)
    source = get_arch("charm").build(**cfg)
    warm_start(source, path)
    N = cfg["N"]
    grown = get_arch("charm").build(**{**cfg, field: [N + 4, N + 2, N + 4]})
    warm_start(grown, path, grow_layers=True)
    x = _image(64, 64)
    with torch.no_grad():
        a, b = source.eval()(x, torch.tensor([1.0])), grown.eval()(x, torch.tensor([1.0]))
    torch.testing.assert_close(b.y, a.y, rtol=0, atol=1e-6)
    torch.testing.assert_close(b.x_hat, a.x_hat, rtol=0, atol=1e-6)
    assert torch.equal(b.likelihoods["y"], a.likelihoods["y"]) or field == "analysis"
    grown.train()
    out = grown(x, torch.tensor([1.0]))
    ((out.x_hat - x) ** 2).mean().backward()
    weight = grown.get_submodule(layer).weight.grad   # (Ci, Co, k, k) for g_s's, (Co, Ci, k, k) for g_a's
    new = weight[N:] if field == "synthesis" else weight[:, N:]
    assert new.abs().sum() > 0


def test_grow_live_needs_grow():
    from liccodec.train.config import TrainConfig

    with pytest.raises(ValueError, match="grow_live"):
        TrainConfig(data="x", grow_live=1.0)
    assert TrainConfig(data="x", grow=True, grow_live=1.0).grow_live == 1.0
