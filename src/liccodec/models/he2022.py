"""Space-channel context codec (He et al., ELIC, CVPR 2022; checkerboard passes of He et al.,
CVPR 2021): the transforms of ``minnen2018`` with the entropy model of
``liccodec.latent.checkerboard``.

    x --g_a--> y --[CheckerboardChannel: hyperprior + uneven groups x 2 passes]--> y_hat --g_s--> x_hat

Its transforms, gains and hyperprior have the same names and shapes as ``msh``'s (and
``charm``'s), and its context networks start as a zero correction, so ``init`` = a shipped
``msh`` or ``charm`` model starts training from exactly that model's transforms with the
mean-scale hyperprior's rates (charm's slice networks and residual prediction are left out).
ELIC's own transforms (residual blocks, attention) are not used.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from liccodec.latent.checkerboard import DEFAULT_GROUPS, CheckerboardChannel
from liccodec.models.minnen2018 import MeanScaleHyperprior, MshConfig
from liccodec.models.registry import register_arch


@dataclass
class ElicConfig(MshConfig):
    groups: tuple[int, ...] = DEFAULT_GROUPS   # channels per group, in coding order; they sum to M
    context_hidden: int = 64                   # width of the channel-context networks (5x5)
    aggregation_hidden: int = 192              # width of the parameter-aggregation networks (1x1)


@register_arch("elic", config=ElicConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], groups=[2, 4, 6], context_hidden=8,
                         aggregation_hidden=16),
               summary="msh with checkerboard + uneven channel-group context (He 2021, ELIC He 2022)")
class SpaceChannelCodec(MeanScaleHyperprior):
    """Variable-rate space-channel context codec. ``level`` is a float in [0, levels-1]."""

    @staticmethod
    def _latent(cfg: ElicConfig, init_log_gain: Tensor, inference: bool) -> CheckerboardChannel:
        return CheckerboardChannel(cfg.N, cfg.M, cfg.levels, cfg.groups, cfg.context_hidden,
                                   cfg.aggregation_hidden, init_log_gain, inference)
