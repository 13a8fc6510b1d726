"""Asymmetric learned image compression: a heavy encoder and a light decoder around charm's
entropy model (after Fu, Liang, Liang, Li, Zhang, Han, "Asymmetric Learned Image Compression
with Multi-Scale Residual Block, Importance Map, and Post-Quantization Filtering", arXiv
2206.10618, and Wang et al., "AsymLLIC", arXiv 2412.17270; docs/models/asym.md).

    x --g_a [charm's layers; MBConv and DWAN after the 1/4 and 1/8 stages]--> y
      --[charm: hyperprior + channel slices, exact integer parameters]--> y_hat
      --g_s [PQF on y_hat; narrow deconvolutions, e.g. 128 -> 64 -> 32]--> x_hat

The encoder runs once per image and may be heavy; the decoder runs on every view and should
be light. So the analysis gains inverted-residual blocks (``liccodec.nn.mbconv``: LayerNorm,
PReLU, depthwise convolution, local squeeze-excitation) and wavelet-domain attention
(``liccodec.nn.dwan``), and the synthesis is narrower than charm's (``synthesis``, hidden
widths) behind a post-quantization filter (``liccodec.nn.pqf``) that refines y_hat.

Warm starts. g_a keeps charm's layers under charm's names (``g_a.0`` .. ``g_a.6``); the
blocks are extra entries (``g_a.mbconv4``, ``g_a.dwan4``, ...) whose last layer starts at
zero, so with ``init`` = charm.mse the analysis, the latents and the rate are charm.mse's
exactly. The narrow synthesis cannot be a zero extension of charm's: only the layers whose
shapes fit (the first deconvolution and its IGDN) load, the rest starts fresh (``reinit =
["g_s."]``), and the recipe first trains it behind charm.mse's frozen encoder and entropy
model (docs/asym.stage1.toml) before everything trains on rate-distortion (docs/asym.toml).
With ``synthesis = [N, N, N]`` and the IGDN the model is charm plus zero-start blocks, and
starts as the charm it is warm-started from (tested).

The entropy model is charm's channel-conditional one, unchanged: every number that sets a
coding parameter stays exact integer arithmetic, and the decoder does no more entropy-model
work than charm's (why the seed's state-space context is not here: docs/models/asym.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from liccodec.models.minnen2018 import GA_STAGE_END, GS_STAGE_END, with_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn import deconv
from liccodec.nn.dwan import WaveletAttention
from liccodec.nn.mbconv import MBConv, NormAct
from liccodec.nn.pqf import PostQuantFilter

#: strides whose stage output may carry blocks, and the index, in charm's g_a / g_s, of the
#: layer that ends that stage (-1: before g_s's first layer, on y_hat). The wavelet attention
#: needs its input cut at even positions, which holds behind g_a's stride-2 stages (tiles
#: start on multiples of 16 pixels); y itself (stride 16) gets no block.
_GA_STAGE = {s: GA_STAGE_END[s] for s in (2, 4, 8)}
_GS_STAGE = {s: GS_STAGE_END[s] for s in (16, 8, 4, 2)}
#: the synthesis' nonlinearities: charm's inverse GDN, or LayerNorm + PReLU
SYNTHESIS_ACTS = ("igdn", "ln-prelu")


@dataclass
class AsymConfig(CharmConfig):
    # hidden widths of g_s (charm's are N, N, N); with s1 = N the first deconvolution and
    # its IGDN keep charm's shapes, so they warm-start from charm.mse
    synthesis: tuple[int, ...] = (128, 64, 32)
    synthesis_act: str = "igdn"              # "igdn" (charm's) or "ln-prelu"
    pqf: bool = True                         # post-quantization filter on y_hat, before g_s
    pqf_hidden: int = 64
    # strides after whose g_a stage an MBConv block sits; () for none. Not 1/2 by default: there
    # a block costs 21 kMAC/px and, in training on a CPU, about 1.7x charm's whole step
    mbconv_ga: tuple[int, ...] = (4, 8)
    # the same after g_s's upsampling stages (off: the decoder stays light)
    mbconv_gs: tuple[int, ...] = ()
    mbconv_expand: float = 2.0               # inner width / stage width
    se_ratio: float = 0.25                   # squeeze width / stage width
    se_window: int = 9                       # positions on a side of the local squeeze (odd)
    # strides after whose g_a stage a wavelet attention block sits (after the MBConv)
    dwan_ga: tuple[int, ...] = (4, 8)
    dwan_kernel: int = 5                     # depthwise kernel of its mask, at half resolution

    def __post_init__(self) -> None:
        if self.synthesis_act not in SYNTHESIS_ACTS:
            raise ValueError(f"synthesis_act is one of {SYNTHESIS_ACTS}, got {self.synthesis_act!r}")
        if self.synthesis and len(self.synthesis) != 3:
            raise ValueError(f"synthesis gives g_s's three hidden widths, got {list(self.synthesis)}")


def _synthesis(cfg: AsymConfig) -> nn.Sequential:
    """msh's g_s layout (layer names 0 .. 6) with ``cfg.synthesis``'s widths and LayerNorm +
    PReLU in place of the inverse GDNs."""
    s1, s2, s3 = cfg.synthesis or (cfg.N, cfg.N, cfg.N)
    return nn.Sequential(deconv(cfg.M, s1), NormAct(s1), deconv(s1, s2), NormAct(s2), deconv(s2, s3), NormAct(s3),
                         deconv(s3, 3))


@register_arch("asym", config=AsymConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True,
                         synthesis=[8, 6, 4], synthesis_act="ln-prelu", pqf_hidden=8, mbconv_ga=[2, 4, 8],
                         mbconv_gs=[8],
                         se_window=3, dwan_kernel=3),
               summary="charm with a heavy encoder (MBConv, wavelet attention) and a light decoder "
                       "(narrow g_s, post-quantization filter): asymmetric LIC (after Fu 2022)")
class AsymmetricCodec(ChannelConditionalCodec):
    """Variable-rate asymmetric codec. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: AsymConfig, inference: bool = False):
        super().__init__(cfg, inference)
        N, M = cfg.N, cfg.M
        s1, s2, s3 = cfg.synthesis or (N, N, N)

        def encoder_blocks(s: int) -> list[tuple[str, nn.Module]]:
            out: list[tuple[str, nn.Module]] = []
            if s in cfg.mbconv_ga:
                out.append((f"mbconv{s}", MBConv(N, cfg.mbconv_expand, cfg.se_ratio, cfg.se_window)))
            if s in cfg.dwan_ga:
                out.append((f"dwan{s}", WaveletAttention(N, kernel=cfg.dwan_kernel)))
            return out

        width = {8: s1, 4: s2, 2: s3}

        def decoder_blocks(s: int) -> list[tuple[str, nn.Module]]:
            if s == 16:
                return [("pqf", PostQuantFilter(M, cfg.pqf_hidden))]
            return [(f"mbconv{s}", MBConv(width[s], cfg.mbconv_expand, cfg.se_ratio, cfg.se_window))]

        if 16 in cfg.mbconv_gs:
            raise ValueError("mbconv_gs: no stage at strides [16]; choose from [2, 4, 8]")
        # reassigning keeps g_a and g_s in their registration slots (state-dict order)
        self.g_a = with_stage_blocks(self.g_a, _GA_STAGE, sorted({*cfg.mbconv_ga, *cfg.dwan_ga}),
                                     encoder_blocks, "mbconv_ga/dwan_ga")
        g_s = self.g_s if cfg.synthesis_act == "igdn" else _synthesis(cfg)
        self.g_s = with_stage_blocks(g_s, _GS_STAGE, [*([16] if cfg.pqf else []), *cfg.mbconv_gs],
                                     decoder_blocks, "mbconv_gs")
