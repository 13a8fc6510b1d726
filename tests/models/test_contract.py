"""The architecture contract: every registered architecture, in its tiny configuration
(``@register_arch(..., tiny=...)``), must

* decode to exactly the encoder's latents,
* write files whose size is the estimated rate (within 1%, plus a fixed overhead per stream),
* code the same tiled or whole,
* export -> load -> export to the same bytes, and
* write the same bytes after being rebuilt from its config and exported weights,
* and train a step through the contract's hooks alone.

A new architecture is covered by registering it: the ``arch`` fixture runs over
``list_archs()``. The toy architecture defined below (a 2-layer g_a/g_s around the
channel-wise latent codec, as a new model file would be) shows it: it is registered by the
decorator for the duration of its cases only, so it never leaks into ``lic models``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from liccodec.latent.channelwise import ChannelConditional
from liccodec.models import get_arch, list_archs, register_arch, unregister_arch
from liccodec.models.base import LearnedCodec
from liccodec.nn import GDN, conv, deconv
from liccodec.tiling import TilePolicy

TOY = "toy"
Q = (1000, 2350, 3000)  # the lowest, an interpolated and the highest quality of 3 levels


# ---- a toy architecture, written as a new model file would be ------------------------------
@dataclass
class ToyConfig:
    N: int = 8
    M: int = 12
    C: int = 16
    lambdas: tuple[float, ...] = field(default_factory=lambda: (0.004, 0.02, 0.08))
    slices: int = 3

    @property
    def levels(self) -> int:
        return len(self.lambdas)


class ToyCodec(LearnedCodec):
    """Two strided convolutions each way around the channel-wise latent codec."""

    def __init__(self, cfg: ToyConfig, inference: bool = False):
        g_a = nn.Sequential(conv(3, cfg.C), GDN(cfg.C), conv(cfg.C, cfg.M))
        g_s = nn.Sequential(deconv(cfg.M, cfg.C), GDN(cfg.C, inverse=True), deconv(cfg.C, 3))
        latent = ChannelConditional(cfg.N, cfg.M, cfg.levels, cfg.slices, 8, inference=inference)
        super().__init__(cfg, g_a, g_s, latent)


def _register_toy() -> None:
    register_arch(TOY, config=ToyConfig, tiny={"lambdas": [0.004, 0.02, 0.08]},
                  summary="test-only toy: 2-layer transforms, channel-wise latent")(ToyCodec)


@pytest.fixture(params=[*list_archs(), TOY])
def arch(request):
    """Every registered architecture, and the toy one registered for its cases only."""
    if request.param == TOY:
        _register_toy()
    try:
        yield request.param
    finally:
        if request.param == TOY:
            unregister_arch(TOY)


# ---- helpers ------------------------------------------------------------------------------
def _image(h: int, w: int, seed: int = 3) -> torch.Tensor:
    """A photo-like test image (gradients, an edge, noise) as (1, 3, h, w) in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 0.9, yy * 1.3, (xx + yy) * 0.5], axis=2) + 70 * (xx > w // 3)[..., None]
    img = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


def _export(arch: str, tiny_builder, out) -> tuple[nn.Module, object]:
    """(the tiny float model, the path of its exported weights)."""
    from liccodec.train.export import export_module

    model = tiny_builder[0](arch=arch)
    return model, export_module(model, arch, dict(get_arch(arch).tiny), f"{arch}.tiny", out)


def _rebuilt(arch: str, path) -> nn.Module:
    """An inference model built from the registry's config and the weights file."""
    from safetensors.torch import load_file

    net = get_arch(arch).build(inference=True, **get_arch(arch).tiny)
    net.load_tensors(load_file(str(path)))
    return net.eval()


def _hw(net, x: torch.Tensor) -> tuple[int, int]:
    return x.shape[2] // net.downsampling, x.shape[3] // net.downsampling


# ---- the contract -------------------------------------------------------------------------
def test_decoder_latents_equal_the_encoders(arch, tiny_builder, tmp_path):
    _, path = _export(arch, tiny_builder, tmp_path)
    net = _rebuilt(arch, path)
    x = _image(128, 128)
    with torch.no_grad():
        y = net.g_a(x)
    for q in Q:
        streams, y_hat_enc = net.latent.compress(y, q)
        assert torch.equal(net.latent.decompress(streams, _hw(net, x), q), y_hat_enc), q


def test_file_size_is_the_estimated_rate(arch, tiny_builder, tmp_path):
    """Real bytes vs the float model's estimate: within 1%, plus 8 bytes per stream (the
    rANS coder's final state; the escapes of the rare out-of-table values)."""
    model, path = _export(arch, tiny_builder, tmp_path)
    net = _rebuilt(arch, path)
    x = _image(256, 256)
    for q in Q:
        streams = net.compress(x, q)
        coded = sum(len(s) for s in streams.values())
        with torch.no_grad():
            out = model(x, torch.tensor([(q - 1000) / 1000]))
        est = sum((-torch.log2(lik)).sum().item() for lik in out.likelihoods.values()) / 8
        assert abs(coded - est) <= 0.01 * est + 8 * len(streams), (q, coded, est)


def test_tiled_coding_equals_whole(arch, tiny_builder, tmp_path):
    """Decoding tile by tile gives the same latents (the integer parts exactly, float
    post-processing such as a residual prediction up to rounding) and the same pixels up to
    rounding; a tiled encoder's float analysis may move a rare symbol, nothing more."""
    _, path = _export(arch, tiny_builder, tmp_path)
    net = _rebuilt(arch, path)
    x = _image(128, 128, seed=5)
    small, never = TilePolicy(threshold=0, tile=64), TilePolicy.never()
    streams = net.compress(x, 2350, tiles=never)
    tile = small.core(net.y_stride)
    whole_y = net.latent.decompress(streams, _hw(net, x), 2350)
    tiled_y = net.latent.decompress(streams, _hw(net, x), 2350, tile)
    assert torch.allclose(tiled_y, whole_y, rtol=0, atol=1e-5)
    whole = net.decompress(streams, x.shape[2:], 2350, tiles=never)
    tiled = net.decompress(streams, x.shape[2:], 2350, tiles=small)
    assert (tiled - whole).abs().max() < 1e-4
    tiled_enc = net.latent.decompress(net.compress(x, 2350, tiles=small), _hw(net, x), 2350)
    assert ((tiled_enc - whole_y).abs() > 1e-3).float().mean() < 1e-3


def test_export_load_export_is_byte_identical(arch, tiny_builder, tmp_path):
    from liccodec.train.export import export_module

    _, path = _export(arch, tiny_builder, tmp_path / "a")
    again = export_module(_rebuilt(arch, path), arch, dict(get_arch(arch).tiny), f"{arch}.tiny", tmp_path / "b")
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_rebuilt_model_writes_identical_bytes(arch, tiny_builder, tmp_path):
    """The exported weights are all that coding reads: a model rebuilt from the registry's
    config and the file writes the bytes of the model that loaded them in training's build."""
    from safetensors.torch import load_file

    _, path = _export(arch, tiny_builder, tmp_path)
    trained = get_arch(arch).build(**get_arch(arch).tiny).eval()
    trained.load_tensors(load_file(str(path)))  # a training build: loads what it ships
    x = _image(128, 128, seed=7)
    for q in Q:
        assert _rebuilt(arch, path).compress(x, q) == trained.compress(x, q), q


def test_a_training_step_runs_through_the_contract(arch, tiny_builder):
    """What the trainer touches: forward's likelihoods, the latent codec's auxiliary loss and
    parameters, its closed-form refresh and its per-level tables."""
    model = tiny_builder[0](arch=arch).train()
    x = _image(64, 64)
    out = model(x, torch.tensor([0.7]))
    assert out.x_hat.shape == x.shape and out.likelihoods
    rate = sum((-torch.log2(lik)).sum() for lik in out.likelihoods.values())
    (rate + model.lambda_at(torch.tensor([0.7])).sum() * (out.x_hat - x).pow(2).sum()).backward()
    model.zero_grad(set_to_none=True)
    model.latent.aux_loss().backward()
    assert all(p.grad is not None for p in model.latent.aux_parameters())
    model.latent.refresh()
    state = model.state_dict()
    assert all(state[k].shape[0] == len(model.cfg.lambdas) for k in model.level_tables())
    assert model.quality_range()[:2] == (1.0, float(len(model.cfg.lambdas)))


def test_the_toy_architecture_does_not_leak():
    """It was registered and unregistered around its own cases (``arch``)."""
    assert TOY not in list_archs()
    _register_toy()
    try:
        assert TOY in list_archs() and get_arch(TOY).factory is ToyCodec
    finally:
        unregister_arch(TOY)
    assert TOY not in list_archs()
