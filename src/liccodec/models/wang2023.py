"""Residual SwinV2 transformer codec (Wang et al., "Enhanced Residual SwinV2
Transformer for Learned Image Compression", arXiv 2308.11864, 2023): residual SwinV2
transformer blocks (RSTB, ``liccodec.nn.swin``) behind the inner stages of the transforms and
a three-convolution feature enhancement at the image ends, on the transforms and entropy
model of ``charm``.

    x --enh--> g_a [RSTB after the 1/8 stage (config: also 1/4)] --> y
      --[charm: hyperprior + channel slices]--> y_hat
      --g_s [RSTB after the 1/8 stage (config: also 1/4)] --enh--> x_hat

An RSTB is ``depth`` SwinV2 layers (scaled cosine attention in 8x8 windows, alternately
shifted by half a window, log-spaced continuous position bias, residual post-norm, an MLP)
followed by a 3x3 convolution and a skip. The enhancement is 1x1 -> 3x3 -> 1x1 with a skip,
one on the image before g_a, one on g_s's output.

Warm starts. g_a and g_s keep charm's layers under charm's names (``g_a.0`` .. ``g_a.6``);
the new modules are extra entries (``g_a.enh``, ``g_a.swin8``, ``g_s.swin8``, ``g_s.enh``;
with blocks at 1/4 also ``g_a.swin4``, ``g_s.swin4``) whose last layer starts at zero, so with
``init`` = a shipped charm model the whole model is exactly that model at step 0: the same x_hat and the same rate
estimate (tested).

What was changed from the paper, and why (docs/models/swin.md has the whole list):

- **Base network.** The paper's transforms are built from its blocks (RSTB between strided
  convolutions at 1/2, 1/4 and 1/8, an entropy model of its own). Here the blocks are
  inserted into charm's GDN transforms, by default behind the 1/8 stages only, so that
  ``charm.mse`` warm-starts them. Cost decided the placement: one training step of 8 crops
  of 256x256 costs about 1.5x charm's with blocks at 1/8, 2.9x with blocks at 1/8 and 1/4
  (``swin_ga = swin_gs = [4, 8]``); a block at 1/2 would cost four times one at 1/4.
- **Smaller blocks.** Two layers per block (one regular, one shifted window; the S2LIC code
  has 1 to 3 by stage), an MLP of twice the channels (SwinV2: four times),
  4 heads of 32 channels at charm's width.
- **Zero start.** The RSTB's closing convolution and the enhancement's last 1x1 start at
  zero (the authors' enhancement scales its branch by 0.2 instead).
- **Windows never resize.** SwinV2 shrinks the window (and drops the shift) on a map smaller
  than a window; here windows keep their size and the border is masked, so tiled coding
  cuts the same windows as whole-image coding (``liccodec.nn.swin``).
- **Enhancement width and activations.** A hidden width of 32 (cost at full resolution) with
  LeakyReLU between the convolutions; in the authors' code (of their follow-up, S2LIC) the
  three convolutions have no activation between them and sit between two dense blocks.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from torch import nn

from liccodec.models.minnen2018 import add_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn.swin import FeatureEnhancement, ResidualSwinV2Block

#: name prefixes of the modules added to charm's g_a / g_s
BLOCK_NAMES = ("swin", "enh")


@dataclass
class SwinConfig(CharmConfig):
    # strides behind whose g_a downsampling stage / g_s upsampling stage an RSTB sits
    # (the default, 1/8 only, costs about 1.5x charm's training step; (4, 8) costs 2.9x)
    swin_ga: tuple[int, ...] = field(default_factory=lambda: (8,))
    swin_gs: tuple[int, ...] = field(default_factory=lambda: (8,))
    swin_depth: int = 2        # SwinV2 layers per block (regular, shifted, regular, ...)
    swin_heads: int = 4        # attention heads (charm's 128 channels: 32 per head)
    swin_window: int = 8       # window side, in positions of the block's stage
    swin_mlp: float = 2.0      # MLP hidden width / channels (SwinV2: 4)
    swin_cpb: int = 512        # hidden width of the continuous position bias MLP (SwinV2: 512)
    enh: bool = True           # the feature enhancement on the image before g_a and after g_s
    enh_width: int = 32        # its hidden width


@register_arch("swin", config=SwinConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True,
                         swin_ga=[4, 8], swin_gs=[8, 4], swin_heads=2, swin_window=4, swin_cpb=16,
                         enh_width=4),
               summary="charm + residual SwinV2 transformer blocks and feature enhancement (Wang 2023)")
class ResidualSwinV2Codec(ChannelConditionalCodec):
    """Variable-rate charm with residual SwinV2 blocks. ``level`` is a float in [0, levels-1]."""

    def __init__(self, cfg: SwinConfig, inference: bool = False):
        super().__init__(cfg, inference)

        def block(s: int, c: int) -> list[tuple[str, nn.Module]]:
            return [(f"swin{s}", ResidualSwinV2Block(c, cfg.swin_depth, cfg.swin_heads, cfg.swin_window,
                                                     cfg.swin_mlp, cfg.swin_cpb))]

        add_stage_blocks(self, block, cfg.swin_ga, cfg.swin_gs, "swin_ga", "swin_gs")
        if cfg.enh:  # at the image ends: before g_a's first layer, after g_s's last
            self.g_a = nn.Sequential(OrderedDict([("enh", FeatureEnhancement(3, cfg.enh_width)),
                                                  *self.g_a.named_children()]))
            self.g_s = nn.Sequential(OrderedDict([*self.g_s.named_children(),
                                                  ("enh", FeatureEnhancement(3, cfg.enh_width))]))
