"""3DM-WeConvene (Fu, Liang, Liang, Fang, Zhang, Han, arXiv 2504.04658, 2025): 3D multi-level
wavelet-domain convolutions in the transforms (``liccodec.nn.weconv3d``) and a 3D
wavelet-domain, LF-first channel-wise entropy model (``liccodec.latent.wavelet3d``), on the
transforms and hyperprior of ``charm``; the follow-up of WeConvene (``models.fu2024``).

    x --g_a [3DM-WeConv after the 1/4 and 1/8 stages]--> y
      --[3DWeChARM: hyperprior; y -> 3D Haar bands, LLL slices first, then the 7 high bands]--> y_hat
      --g_s [3DM-WeConv after the 1/8 and 1/4 stages]--> x_hat

The paper's claims are flags, so that each ablation is one line of a recipe:
``weconv3d`` (the blocks at all), ``channel_dwt`` (the channel axis as the third wavelet axis
in the blocks; off: 2D multi-level blocks), ``wavelet`` / ``dwt_levels`` / ``kernels`` (the
blocks' filters, depth and per-subband kernel sizes), ``entropy`` ("3d": 3DWeChARM, "2d":
WeConvene's WeChARM, "charm": charm's spatial slices) and ``lf_first`` (3DWeChARM's low band
first; off: slices of all eight bands). The two-step LF/HF rate training is a recipe option
(``TrainConfig.latent_rate_weights`` on the likelihoods ``y_lf`` and ``y_hf``).

Warm starts. g_a and g_s keep charm's layers under charm's names (``g_a.0`` .. ``g_a.6``);
the blocks are extra entries (``g_a.weconv3d4``, ...) whose last layer starts at zero, so with
``init`` = a shipped ``charm`` model the transforms are exactly that model's. With
``entropy = "charm"`` the whole model is then exactly the charm model; with "3d" the gains,
h_a, h_s and z prior load from charm, its slice networks and residual prediction are left
out, and the entropy model starts as charm's hyperprior carried into the 3D wavelet domain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from liccodec.latent.channelwise import ChannelConditional
from liccodec.latent.hyperprior import GainedHyperprior
from liccodec.latent.wavelet import WaveletChannel
from liccodec.latent.wavelet3d import Wavelet3DChannel
from liccodec.models.minnen2018 import add_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn.weconv3d import WaveletConv3D

#: image sides are padded to a multiple of this (g_a's 16 times h_a's 4)
_PAD = 64
ENTROPY_MODELS = ("3d", "2d", "charm")


@dataclass
class WeConv3DConfig(CharmConfig):
    weconv3d: bool = True        # 3DM-WeConv blocks in g_a and g_s
    channel_dwt: bool = True     # the blocks' DWT also across channels (False: 2D multi-level blocks)
    wavelet: str = "legall53"    # the blocks' wavelet: legall53 (5/3), cdf97 (9/7) or haar
    dwt_levels: int = 2          # the blocks' spatial levels
    kernels: tuple[int, int] = (3, 1)   # kernel sizes of the low band and of the high bands
    # the strides at which g_a (after its downsampling stage) and g_s (after its upsampling
    # stage) get a block, as weconv's
    weconv_at: tuple[int, ...] = field(default_factory=lambda: (4, 8))
    entropy: str = "3d"          # "3d": 3DWeChARM; "2d": WeChARM (weconv's); "charm": charm's slices
    lf_first: bool = True        # 3DWeChARM codes the low band first (False: slices of all 8 bands)

    def __post_init__(self) -> None:
        if self.entropy not in ENTROPY_MODELS:
            raise ValueError(f"entropy is one of {ENTROPY_MODELS}, got {self.entropy!r}")
        if self.weconv3d:
            # a block at stride s sees sides that are multiples of 64 / s: each level halves them
            bad = [s for s in self.weconv_at if _PAD % (s << self.dwt_levels)]
            if bad:
                raise ValueError(f"dwt_levels={self.dwt_levels} does not fit a block at strides {bad}: "
                                 f"a block at stride s takes at most log2({_PAD} / s) levels")


@register_arch("weconv3d", config=WeConv3DConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True),
               summary="charm + 3D multi-level wavelet-domain convolutions and 3D LF-first wavelet "
                       "slices (3DM-WeConvene, Fu 2025)")
class WeConvene3D(ChannelConditionalCodec):
    """Variable-rate 3DM-WeConvene. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: WeConv3DConfig, inference: bool = False):
        super().__init__(cfg, inference)
        if cfg.weconv3d:  # a 3DM-WeConv block behind each stage of cfg.weconv_at
            def block(s: int, c: int) -> list[tuple[str, nn.Module]]:
                return [(f"weconv3d{s}", WaveletConv3D(c, cfg.wavelet, cfg.dwt_levels, cfg.kernels, cfg.channel_dwt))]
            add_stage_blocks(self, block, cfg.weconv_at, cfg.weconv_at, "weconv_at", "weconv_at")

    @staticmethod
    def _latent(cfg: WeConv3DConfig, init_log_gain: Tensor, inference: bool) -> GainedHyperprior:
        args = (cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, init_log_gain, inference, cfg.lrp)
        if cfg.entropy == "3d":
            return Wavelet3DChannel(*args, lf_first=cfg.lf_first)
        return (WaveletChannel if cfg.entropy == "2d" else ChannelConditional)(*args)
