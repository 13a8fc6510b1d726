"""Two-branch codec (Fu, Liang, Liang, Fang, Zhang, Han, "Learned Image Compression with
Dual-Branch Encoder and Conditional Information Coding", DCC 2024): two branches of the
transforms give a high-resolution (HR, 1/16) and a low-resolution (LR, 1/32) latent; the HR
latent is coded first, channel-wise as charm codes y, and its decoded values condition the
LR latent's slices (``liccodec.latent.twobranch``).

    x --g_a [charm's GDN transform + an LR branch, octave exchanges]--> (y, y_low)
      --[TwoBranchLatent: z, z_low; y in charm's slices; cond(y_hat) -> y_low's slices]--> (y_hat, y_low_hat)
      --g_s [charm's GDN synthesis + an LR branch]--> x_hat

The two branches are the octave transforms of ``arch octave`` (``liccodec.nn.octave``).

Warm starts. g_a, g_s (HR path), the HR gains, h_a, h_s, the z prior, charm's slice networks
and its residual prediction keep charm's names and shapes, and nothing from the LR side
reaches the HR side at the start (the transforms' LR -> HR exchanges start at zero, and the
LR latent is coded after the HR one). So with ``init`` = a shipped ``charm`` model, the HR
latent, its coding and the picture are that model's, bit for bit; the LR latent starts small
(``low_init``) and nearly free (docs/models/twobranch.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from liccodec.latent.twobranch import TwoBranchLatent
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn.octave import OctaveAnalysis, OctaveSynthesis


@dataclass
class TwoBranchConfig(CharmConfig):
    N_low: int = 64          # LR channels inside g_a and g_s (HR: charm's N)
    M_low: int = 96          # LR latent channels (HR: charm's M)
    low_init: float = 0.1    # scale of g_a's LR output layer at initialisation (the LR latent starts small)
    slices_low: int = 4      # slices of the LR latent (HR: charm's ``slices``)
    hidden_low: int = 64     # width of each LR slice network
    cond_hidden: int = 128   # width of the HR -> LR conditioning network
    cond_ch: int = 64        # channels of the conditional information every LR slice reads


@register_arch("twobranch", config=TwoBranchConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True, N_low=4, M_low=6,
                         low_init=8.0, slices_low=2, hidden_low=8, cond_hidden=8, cond_ch=4),
               summary="two branches (HR + LR latents), channel-wise slices for each, the decoded HR "
                       "latent conditioning the LR one (Fu 2024, DCC)")
class TwoBranchCodec(ChannelConditionalCodec):
    """Variable-rate two-branch codec. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: TwoBranchConfig, inference: bool = False):
        super().__init__(cfg, inference)
        # reassigning keeps g_a and g_s in their registration slots (state-dict order)
        self.g_a = OctaveAnalysis(self.g_a, cfg.N_low, cfg.M_low, cfg.low_init)
        self.g_s = OctaveSynthesis(self.g_s, cfg.M, cfg.N_low, cfg.M_low)

    @staticmethod
    def _latent(cfg: TwoBranchConfig, init_log_gain: Tensor, inference: bool) -> TwoBranchLatent:
        return TwoBranchLatent(cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, cfg.N_low, cfg.M_low,
                               cfg.slices_low, cfg.hidden_low, cfg.cond_hidden, cfg.cond_ch, init_log_gain,
                               inference, cfg.lrp)
