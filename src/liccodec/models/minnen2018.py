"""Mean-scale hyperprior image codec (Minnen et al., NeurIPS 2018, without context model).

    x --g_a--> y --[GainedHyperprior]--> y_hat --g_s--> x_hat

``g_a``/``g_s`` are the GDN transforms of Balle et al. (ICLR 2018); see
``liccodec.latent.hyperprior`` for the entropy model and the gain units.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from liccodec.latent.hyperprior import GainedHyperprior
from liccodec.models.base import LearnedCodec
from liccodec.models.registry import register_arch
from liccodec.nn import GDN, conv, deconv

# CompressAI's MSE lambdas for its qualities 1..7 (distortion = lambda * 255^2 * MSE).
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)


#: Where each stage of msh's (and charm's) transforms ends: stride (image pixels per position)
#: -> index of the layer that ends it in g_a / g_s; -1 = before g_s's first layer (on y_hat).
GA_STAGE_END = {2: 1, 4: 3, 8: 5, 16: 6}
GS_STAGE_END = {16: -1, 8: 1, 4: 3, 2: 5}


def with_stage_blocks(seq: nn.Sequential, stage_end: dict[int, int], strides: Iterable[int],
                      make: Callable[[int], list[tuple[str, nn.Module]]], option: str,
                      container: type = nn.Sequential) -> nn.Sequential:
    """``seq`` with the named modules ``make(s)`` inserted where the stage of stride ``s`` ends,
    for each s of ``strides`` (a config option, named in errors); the original layers keep
    their names (``0``, ``1``, ...), so weights of the plain model load by name. This is how
    the zoo's architectures extend charm with zero-started blocks (a warm start is exact)."""
    strides = tuple(strides)
    bad = set(strides) - set(stage_end)
    if bad:
        raise ValueError(f"{option}: no stage at strides {sorted(bad)}; choose from {sorted(stage_end)}")
    where = {stage_end[s]: s for s in strides}
    layers: list[tuple[str, nn.Module]] = list(make(where[-1])) if -1 in where else []
    for i, m in enumerate(seq):
        layers.append((str(i), m))
        if i in where:
            layers.extend(make(where[i]))
    return container(OrderedDict(layers))



def add_stage_blocks(model: nn.Module, make: Callable[[int, int], list[tuple[str, nn.Module]]],
                     ga_at: Iterable[int], gs_at: Iterable[int], ga_option: str, gs_option: str) -> None:
    """Give ``model``'s g_a and g_s the named modules ``make(stride, channels)`` behind their
    inner stages (strides 2, 4 and 8): g_a's at the strides ``ga_at``, g_s's at ``gs_at``
    (config options, named in errors), each sized to the channels that stage ends with."""
    cfg = model.cfg
    s1, s2, s3 = cfg.synthesis or (cfg.N, cfg.N, cfg.N)
    a1, a2, a3 = cfg.analysis or (cfg.N, cfg.N, cfg.N)
    ga_widths, gs_widths = {2: a1, 4: a2, 8: a3}, {8: s1, 4: s2, 2: s3}
    # reassigning keeps g_a and g_s in their registration slots (state-dict order)
    model.g_a = with_stage_blocks(model.g_a, {s: GA_STAGE_END[s] for s in ga_widths}, ga_at,
                                  lambda s: make(s, ga_widths[s]), ga_option)
    model.g_s = with_stage_blocks(model.g_s, {s: GS_STAGE_END[s] for s in gs_widths}, gs_at,
                                  lambda s: make(s, gs_widths[s]), gs_option)

@dataclass
class MshConfig:
    N: int = 128
    M: int = 192
    lambdas: tuple[float, ...] = field(default_factory=lambda: DEFAULT_LAMBDAS)
    # widths of g_a's three hidden layers; () = (N, N, N). A wider analysis costs the encoder
    # alone: files decode with the same synthesis and entropy model (charm.ga192)
    analysis: tuple[int, ...] = ()
    # widths of g_s's three hidden layers; () = (N, N, N). A narrower synthesis decodes
    # faster and can be trained behind a frozen encoder and entropy model (charm.fast).
    synthesis: tuple[int, ...] = ()
    # the hyper-synthesis h_s's two hidden widths (msh and charm); () = (M, 3M/2). Narrower ones
    # keep the exact integer networks cheap when M grows (charm.m320: charm.mse's 192, 288)
    hyper: tuple[int, ...] = ()
    # widths of the feedback encoder g_f's three hidden layers; () = none. g_f reads the image
    # and what g_a's y decodes to, and corrects y (``LearnedCodec.feedback``): it costs the
    # encoder alone, and files decode with the same decoder (charm.fb)
    feedback: tuple[int, ...] = ()

    @property
    def levels(self) -> int:
        return len(self.lambdas)


@register_arch("msh", config=MshConfig, tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08]),
               summary="mean-scale hyperprior (Minnen 2018, no context) + gain units (Cui 2021)")
class MeanScaleHyperprior(LearnedCodec):
    """Variable-rate mean-scale hyperprior. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: MshConfig, inference: bool = False):
        N, M = cfg.N, cfg.M
        a1, a2, a3 = cfg.analysis or (N, N, N)
        g_a = nn.Sequential(
            conv(3, a1), GDN(a1), conv(a1, a2), GDN(a2), conv(a2, a3), GDN(a3), conv(a3, M),
        )
        s1, s2, s3 = cfg.synthesis or (N, N, N)
        g_s = nn.Sequential(
            deconv(M, s1), GDN(s1, inverse=True), deconv(s1, s2), GDN(s2, inverse=True),
            deconv(s2, s3), GDN(s3, inverse=True), deconv(s3, 3),
        )
        # Quantization step ~ 1/sqrt(lambda) for MSE, so start each level's gain there.
        lam = torch.tensor(cfg.lambdas, dtype=torch.float32)
        init = 0.5 * torch.log(lam / lam[len(lam) // 2])
        super().__init__(cfg, g_a, g_s, self._latent(cfg, init, inference))
        if cfg.feedback:
            f1, f2, f3 = cfg.feedback
            self.g_f = nn.Sequential(conv(6, f1), GDN(f1), conv(f1, f2), GDN(f2), conv(f2, f3), GDN(f3),
                                     conv(f3, M))
            # its last layer starts at zero: step 0 encodes as the model without it
            nn.init.zeros_(self.g_f[6].weight)
            nn.init.zeros_(self.g_f[6].bias)

    def grow_rules(self, live: float = 0.0) -> dict[str, dict[str, object]]:
        # more latent channels M: g_a's new outputs start at zero, so y's new channels are 0
        # and g_s (which reads them with its initial weights) draws what the source drew. A
        # live start keeps g_a's new outputs random and g_s reads them through zero weights
        # (the default rule), so the picture is the source's all the same
        if live:
            return super().grow_rules(live)
        return {**super().grow_rules(), "g_a.6": {"new_outputs": "zero"}, "g_s.0": {"new_inputs": "init"}}

    @staticmethod
    def _latent(cfg: MshConfig, init_log_gain: Tensor, inference: bool) -> GainedHyperprior:
        return GainedHyperprior(cfg.N, cfg.M, cfg.levels, init_log_gain, inference, cfg.hyper)
