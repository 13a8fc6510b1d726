"""A small model with a real rate-distortion trade-off, for the rate-control tests.

The shared ``tiny`` model has random transforms: its file size and PSNR hardly move with
quality, so a search over quality would test nothing. This one is built by hand: ``g_a``
takes 16x16 block means of the (centred) colour channels, ``g_s`` repeats them back, GDNs are
identities, the hyper-synthesis predicts zero means and a fixed scale, and the gains span
8x over seven levels (msh.mse's quality range 1-7). Finer quantization at higher quality then
buys PSNR with bytes, as in a trained model (with small wiggles where linear gain
interpolation is not exactly inverted).

Import the fixtures into a test module: ``from ratecontrol_testmodel import rd_model, ...``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

RD_ID = "msh.blocks"
RD_CFG = {"N": 8, "M": 12, "lambdas": [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932]}
Y_SCALE = 8.0       # y = Y_SCALE * (block mean - 0.5)
Y_SCALE_BIAS = 3.0  # predicted scale of the three informative channels


def build_block_model():
    from liccodec.models import get_arch

    torch.manual_seed(0)
    model = get_arch("msh").build(**RD_CFG).eval()
    with torch.no_grad():
        convs = [m for m in model.g_a if isinstance(m, torch.nn.Conv2d)]
        for c in convs:  # kernel 5, stride 2, padding 2: taps 2 and 3 are the 2x2 block
            c.weight.zero_()
            c.bias.zero_()
            for ch in range(3):
                c.weight[ch, ch, 2:4, 2:4] = 0.25
        convs[0].bias[:3] = -0.5
        convs[-1].weight.mul_(Y_SCALE)
        deconvs = [m for m in model.g_s if isinstance(m, torch.nn.ConvTranspose2d)]
        for d in deconvs:  # taps 2 and 3 write output 2i and 2i+1: nearest-neighbour upsampling
            d.weight.zero_()
            d.bias.zero_()
            for ch in range(3):
                d.weight[ch, ch, 2:4, 2:4] = 1.0
        deconvs[0].weight.div_(Y_SCALE)
        deconvs[-1].bias[:3] = 0.5
        for m in list(model.g_a) + list(model.g_s):
            if hasattr(m, "gamma_reparam"):
                m.gamma.copy_(m.gamma_reparam.init(torch.zeros_like(m.gamma)))
        last = model.latent.h_s[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[:3] = Y_SCALE_BIAS
        last.bias[3:RD_CFG["M"]] = 0.2
        levels = len(RD_CFG["lambdas"])
        log_gain = (torch.linspace(-1.5, 1.5, levels) * math.log(2.0))[:, None].expand(levels, RD_CFG["M"])
        model.latent.gain.log_gain.copy_(log_gain)
        model.latent.gain.log_inv_gain.copy_(-log_gain)
    return model


@pytest.fixture(scope="session")
def rd_models_dir(tmp_path_factory) -> Path:
    from liccodec.train.export import export_module

    out = tmp_path_factory.mktemp("rd_models")
    export_module(build_block_model(), "msh", RD_CFG, RD_ID, out, description="rate-control test model")
    return out


@pytest.fixture()
def rd_model(rd_models_dir, monkeypatch) -> str:
    """Point the weights lookup at the block-mean model; yields its id."""
    monkeypatch.setenv("LICCODEC_MODELS", str(rd_models_dir))
    return RD_ID


def smooth_image(seed: int = 1, h: int = 192, w: int = 256) -> np.ndarray:
    """A smooth test picture (gradients, a slow wave, a little noise), uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    phase = rng.uniform(0, 6.28, 2)
    base = np.stack([xx * 1.2, yy * 1.8, (xx + yy) * 0.7], axis=2)
    amp = 20 + 25 * rng.random()
    base = base + amp * (np.sin(xx / 23.0 + phase[0]) * np.cos(yy / 17.0 + phase[1]))[..., None]
    return np.clip(base + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture()
def smooth() -> np.ndarray:
    return smooth_image()
