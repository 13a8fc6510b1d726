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
TINY_CFG = {"N": 8, "M": 12, "lambdas": [0.004, 0.02, 0.08]}


def build_tiny(seed: int = 0):
    from liccodec.models import get_arch

    torch.manual_seed(seed)
    model = get_arch("msh").build(**TINY_CFG).eval()
    # Random weights give a tiny latent and tiny predicted scales: make the latent non-trivial
    # and the predicted scales plausible, so that the rate checks mean something.
    with torch.no_grad():
        model.g_a[-1].weight.mul_(8)
        model.latent.h_s[-1].bias[: TINY_CFG["M"]] = 3.0
    return model


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    from liccodec.train.export import export_module

    out = tmp_path_factory.mktemp("models")
    export_module(build_tiny(), "msh", TINY_CFG, TINY_ID, out, description="test model")
    return out


@pytest.fixture()
def tiny_float():
    """The tiny model before export (float h_s and density model): the rate estimate."""
    return build_tiny()


@pytest.fixture()
def tiny(tiny_models_dir, monkeypatch):
    """Point the weights lookup at the tiny model; yields its id."""
    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    return TINY_ID


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
