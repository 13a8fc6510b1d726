"""WeConvene (Fu et al., ECCV 2024, arXiv 2407.09983): wavelet-domain convolutions in the
transforms (``liccodec.nn.weconv``) and a wavelet-domain channel-wise entropy model
(``liccodec.latent.wavelet``), on the transforms and hyperprior of ``charm``.

    x --g_a [WeConv after the 1/4 and 1/8 stages]--> y
      --[WeChARM: hyperprior; y -> Haar bands, LL slices first, then LH/HL/HH slices]--> y_hat
      --g_s [WeConv after the 1/8 and 1/4 stages]--> x_hat

Two switches make the paper's ablations one flag each: ``weconv`` (WeConv blocks in g_a/g_s)
and ``wecharm`` (the wavelet-domain, LF-first entropy model; off: charm's spatial slices).

Warm starts. g_a and g_s keep charm's layers under charm's names (``g_a.0`` .. ``g_a.6``);
the WeConv blocks are extra entries (``g_a.weconv4``, ...) whose last layer starts at zero,
so with ``init`` = a shipped ``charm`` model the transforms are exactly that model's. With
``wecharm`` off, the whole model is then exactly the charm model; with it on, the gains,
h_a, h_s and z prior load from charm, its slice networks and residual prediction are left
out, and the entropy model starts as charm's hyperprior carried into the wavelet domain
(``latent.wavelet``, "band map").
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from liccodec.latent.channelwise import ChannelConditional
from liccodec.latent.hyperprior import GainedHyperprior
from liccodec.latent.wavelet import WaveletChannel
from liccodec.models.minnen2018 import add_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn.weconv import WaveletConv


@dataclass
class WeConvConfig(CharmConfig):
    weconv: bool = True      # WeConv blocks in g_a and g_s
    wecharm: bool = True     # wavelet-domain LF-first entropy model (False: charm's slices)
    # the strides at which g_a (after its downsampling stage) and g_s (after its upsampling
    # stage) get a block; the paper puts them behind the inner stages, not at full resolution
    weconv_at: tuple[int, ...] = field(default_factory=lambda: (4, 8))
    weconv_hf_groups: int = 1   # 1: the high bands convolved jointly (the paper); 3: per band


@register_arch("weconv", config=WeConvConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True),
               summary="charm + wavelet-domain convolutions and LF-first wavelet-domain slices (WeConvene, Fu 2024)")
class WeConvene(ChannelConditionalCodec):
    """Variable-rate WeConvene. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: WeConvConfig, inference: bool = False):
        super().__init__(cfg, inference)
        if cfg.weconv:  # a WeConv block behind each stage of cfg.weconv_at
            add_stage_blocks(self, lambda s, c: [(f"weconv{s}", WaveletConv(c, hf_groups=cfg.weconv_hf_groups))],
                             cfg.weconv_at, cfg.weconv_at, "weconv_at", "weconv_at")

    @staticmethod
    def _latent(cfg: WeConvConfig, init_log_gain: Tensor, inference: bool) -> GainedHyperprior:
        kind = WaveletChannel if cfg.wecharm else ChannelConditional
        return kind(cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, init_log_gain, inference, cfg.lrp)
