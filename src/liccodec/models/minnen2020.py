"""Channel-conditional hyperprior codec (Minnen & Singh, ICIP 2020; latent residual
prediction optional): the transforms of ``minnen2018`` with the entropy model of
``liccodec.latent.channelwise``.

    x --g_a--> y --[ChannelConditional: hyperprior + slices]--> y_hat --g_s--> x_hat

Its transforms, gains and hyperprior have the same names and shapes as ``msh``'s, and its
slice networks start as zero corrections, so ``init`` = a shipped ``msh`` model starts
training from exactly that model's rate-distortion.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from liccodec.latent.channelwise import ChannelConditional
from liccodec.models.minnen2018 import MeanScaleHyperprior, MshConfig
from liccodec.models.registry import register_arch


@dataclass
class CharmConfig(MshConfig):
    slices: int = 6      # M / slices channels per slice
    hidden: int = 64     # width of each slice network
    lrp: bool = False    # latent residual prediction (a float net per slice, feeds g_s only)


@register_arch("charm", config=CharmConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True),
               summary="msh with a channel-conditional entropy model (Minnen & Singh 2020, LRP optional)")
class ChannelConditionalCodec(MeanScaleHyperprior):
    """Variable-rate channel-conditional hyperprior. ``level`` is a float in [0, levels-1]."""

    @staticmethod
    def _latent(cfg: CharmConfig, init_log_gain: Tensor, inference: bool) -> ChannelConditional:
        return ChannelConditional(cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, init_log_gain,
                                  inference, cfg.lrp, cfg.hyper)
