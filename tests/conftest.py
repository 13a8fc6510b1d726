"""Shared fixtures: a tiny randomly initialised model exported through the real export path.

The tiny model exercises every mechanism (gains, integer hyper-synthesis, tables, escapes,
container) in milliseconds; tests of the shipped weights are marked ``slow`` or skip when
the weights or ../shared are missing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
KODAK = SHARED / "data" / "kodak"
TRAIN = SHARED / "data" / "train"
TINY_ID = "msh.tiny"


def tiny_configs() -> dict[str, dict]:
    """Each registered architecture's tiny configuration (``@register_arch(..., tiny=...)``)."""
    from liccodec.models import get_arch, list_archs

    return {a: dict(get_arch(a).tiny) for a in list_archs()}


def build_tiny(seed: int = 0, arch: str = "msh"):
    from liccodec.models import get_arch

    torch.manual_seed(seed)
    model = get_arch(arch).build(**get_arch(arch).tiny).eval()
    liven(model)
    return model


@torch.no_grad()
def liven(model) -> None:
    """Random weights give a tiny latent and tiny predicted scales: make the latent non-trivial
    and the predicted scales plausible, so that the rate checks mean something; and give the
    zero-initialised corrections (slice networks, residual prediction, the new inputs of a
    widened layer) random weights."""
    model.g_a[-1].weight.mul_(8)
    h_s = getattr(model.latent, "h_s", None)
    if h_s is not None:
        h_s[-1].bias[: model.latent.M] = 3.0
    h_s_low = getattr(model.latent, "h_s_low", None)  # the LR latent's (arch octave)
    if h_s_low is not None:
        h_s_low[-1].bias[: model.latent.M_low] = 3.0
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and not w.any():
            w.normal_(0, 0.05)
        extra = getattr(m, "extra", None)  # nn.layers.WidenedConv2d
        if isinstance(m, torch.nn.Conv2d) and extra is not None and not extra.any():
            extra.normal_(0, 0.05)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    from liccodec.train.export import export_module

    out = tmp_path_factory.mktemp("models")
    for arch, cfg in tiny_configs().items():
        export_module(build_tiny(arch=arch), arch, cfg, f"{arch}.tiny", out, description="test model")
    return out


@pytest.fixture()
def tiny_builder():
    """``build_tiny`` and the tiny configs for test modules (a plain import of conftest is
    ambiguous: tests/eval has a conftest too)."""
    return build_tiny, tiny_configs()


@pytest.fixture()
def tiny_float():
    """The tiny model before export (float h_s and density model): the rate estimate."""
    return build_tiny()


@pytest.fixture()
def tiny(tiny_models_dir, monkeypatch):
    """Point the weights lookup at the tiny models; yields the tiny msh's id."""
    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    return TINY_ID


@pytest.fixture(params=sorted(tiny_configs()))
def tiny_each(request, tiny_models_dir, monkeypatch):
    """Like ``tiny``, once per architecture: the id of that architecture's tiny model."""
    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    return f"{request.param}.tiny"


@pytest.fixture()
def photo() -> np.ndarray:
    """A small deterministic 'photo' (smooth gradients plus texture), uint8 HxWx3, odd size."""
    rng = np.random.default_rng(1)
    h, w = 70, 99
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 2.0, yy * 3.0, (xx + yy) * 1.2], axis=2)
    img = base + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present (no ../shared in this checkout)")


@pytest.fixture()
def torch_encoder(monkeypatch):
    """Encode through the torch models (the reference), not the numpy encoder that
    ``liccodec.encode`` runs for the architectures it knows (``codec._encoder``)."""
    from liccodec import codec
    from liccodec.weights import load_model

    monkeypatch.setattr(codec, "_encoder", lambda spec: load_model(spec.id))
