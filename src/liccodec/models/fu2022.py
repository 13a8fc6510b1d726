"""Octave multi-resolution codec (Fu, Liang, et al., "Learned Image Compression with
Generalized Octave Convolution and Cross-Resolution Parameter Estimation", arXiv 2209.03353,
Signal Processing 2023): octave transforms that give a high-resolution (HR, 1/16) and a
low-resolution (LR, 1/32) latent, a hyperprior for each, the LR latent's decoded values
refining the HR latent's Gaussian parameters (cross-resolution parameter estimation, CRPE),
and no context model: decoding runs no serial loop over slices or positions.

    x --g_a [charm's GDN transform + an LR path, octave exchanges]--> (y, y_low)
      --[OctaveHyperprior: z, z_low; y_low; CRPE(y_low_hat) -> y's parameters; y]--> (y_hat, y_low_hat)
      --g_s [charm's GDN synthesis + an LR path]--> x_hat

(``liccodec.nn.octave``, ``liccodec.latent.octave``; docs/models/octave.md.)

Warm starts. g_a, g_s, the HR gains, h_a, h_s and the z prior keep charm's names and shapes,
and every path from the LR side into the HR side (the LR -> HR exchanges of the transforms,
CRPE's last layer) starts at zero. So with ``init`` = a shipped ``charm`` model the HR
latent is that model's y, the synthesis gives that model's picture from it, and y is coded
by that model's mean-scale hyperprior (its slice networks and residual prediction are left
out: no context model). The LR latent starts small (``low_init``) and nearly free.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from liccodec.latent.octave import OctaveHyperprior
from liccodec.models.minnen2018 import MeanScaleHyperprior, MshConfig
from liccodec.models.registry import register_arch
from liccodec.nn.octave import OctaveAnalysis, OctaveSynthesis


@dataclass
class OctaveConfig(MshConfig):
    N_low: int = 64          # LR channels inside g_a and g_s (HR: charm's N)
    M_low: int = 96          # LR latent channels (HR: charm's M)
    up_width: int = 128      # channels of CRPE's learned 2x upsampling of y_low_hat
    crpe_hidden: int = 192   # width of CRPE's 1x1 parameter network
    low_init: float = 0.1    # scale of g_a's LR output layer at initialisation (the LR latent starts small)


@register_arch("octave", config=OctaveConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], N_low=4, M_low=6, up_width=8, crpe_hidden=16,
                         low_init=8.0),
               summary="octave transforms, HR + LR latents, cross-resolution parameter estimation, "
                       "no context model (Fu 2022)")
class OctaveCodec(MeanScaleHyperprior):
    """Variable-rate octave codec. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: OctaveConfig, inference: bool = False):
        super().__init__(cfg, inference)
        # reassigning keeps g_a and g_s in their registration slots (state-dict order)
        self.g_a = OctaveAnalysis(self.g_a, cfg.N_low, cfg.M_low, cfg.low_init)
        self.g_s = OctaveSynthesis(self.g_s, cfg.M, cfg.N_low, cfg.M_low)

    @staticmethod
    def _latent(cfg: OctaveConfig, init_log_gain: Tensor, inference: bool) -> OctaveHyperprior:
        return OctaveHyperprior(cfg.N, cfg.M, cfg.levels, cfg.N_low, cfg.M_low, cfg.up_width, cfg.crpe_hidden,
                                init_log_gain, inference)
