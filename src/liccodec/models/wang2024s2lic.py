"""S2LIC (Wang, Fu, Cao, Wang, Chen, Liang, "S2LIC: Learned Image Compression with the
SwinV2 Block, Adaptive Channel-wise and Global-inter Attention Context", arXiv 2403.14471,
2024) on the transforms and entropy model of ``charm``:

    x --dense enh--> g_a [RSTB after the 1/8 stage] --> y
      --[ACGC: hyperprior; charm's slices, each anchors then non-anchors, the parameter
         networks reading the adaptive channel-wise and global-inter attention contexts]--> y_hat
      --g_s [RSTB after the 1/8 stage] --dense enh--> x_hat

* ``nn.swin.ResidualSwinV2Block``: the residual SwinV2 transformer block (RS2TB), as in arch
  ``swin`` (Wang et al. 2023, the same group's earlier paper);
* ``nn.dense.DenseEnhancement``: the paper's feature enhancement between two dense blocks,
  at both image ends;
* ``latent.acgc.ACGCChannel``: the ACGC entropy model in exact integer arithmetic.

Warm starts. g_a and g_s keep charm's layers under charm's names; the new modules are extra
entries (``g_a.enh``, ``g_a.swin8``, ``g_s.swin8``, ``g_s.enh``) whose last layer starts at
zero, and the latent keeps charm's gains, h_a, h_s, z prior, slice networks and residual
prediction, its new networks (``sp``, ``pa_a``, ``pa_n``, ``acgc``) giving a zero correction.
So with ``init`` = a shipped charm model step 0 is that model: the same x_hat and the same
likelihoods, bit for bit (tested). docs/models/s2lic.md lists what changed from the paper.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from liccodec.latent.acgc import ACGCChannel
from liccodec.models.minnen2018 import add_stage_blocks
from liccodec.models.minnen2020 import ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.models.wang2023 import SwinConfig
from liccodec.nn.dense import DenseEnhancement
from liccodec.nn.swin import ResidualSwinV2Block

#: name prefixes of the modules added to charm's g_a / g_s and to its latent codec
BLOCK_NAMES = ("g_a.swin", "g_a.enh", "g_s.swin", "g_s.enh", "latent.sp.", "latent.pa_a.", "latent.pa_n.",
               "latent.acgc.", "latent.zero_freq")


@dataclass
class S2licConfig(SwinConfig):
    # the image-end enhancement (``enh``): dense block, 3-conv enhancement (enh_width), dense block
    dense_width: int = 16      # channels the dense blocks run at (S2LIC: 64)
    dense_growth: int = 8      # channels each dense layer adds
    dense_layers: int = 2      # 3x3 layers per dense block
    pa_hidden: int = 64        # width of the anchor and non-anchor parameter networks (1x1)
    skip_zero: bool = False    # flag all-zero channels (arch deform's); S2LIC has none
    acgc_dim: int = 16         # query / key channels of each attention context
    acgc_hidden: int = 32      # hidden width of the query networks
    acgc_window: int = 5       # side of the global-inter attention's window, in y positions


@register_arch("s2lic", config=S2licConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True,
                         swin_ga=[8], swin_gs=[8], swin_heads=2, swin_window=4, swin_cpb=16, enh_width=4,
                         dense_width=4, dense_growth=4, dense_layers=2, pa_hidden=8, acgc_dim=4, acgc_hidden=8,
                         acgc_window=3),
               summary="charm + residual SwinV2 blocks, dense feature enhancement and the ACGC attention "
                       "contexts in checkerboard slices, exact integers (Wang 2024, S2LIC)")
class S2LICCodec(ChannelConditionalCodec):
    """Variable-rate S2LIC on charm. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: S2licConfig, inference: bool = False):
        super().__init__(cfg, inference)

        def block(s: int, c: int) -> list[tuple[str, nn.Module]]:
            return [(f"swin{s}", ResidualSwinV2Block(c, cfg.swin_depth, cfg.swin_heads, cfg.swin_window,
                                                     cfg.swin_mlp, cfg.swin_cpb))]

        add_stage_blocks(self, block, cfg.swin_ga, cfg.swin_gs, "swin_ga", "swin_gs")
        if cfg.enh:
            def enh() -> DenseEnhancement:
                return DenseEnhancement(3, cfg.dense_width, cfg.dense_growth, cfg.dense_layers, cfg.enh_width)
            self.g_a = nn.Sequential(OrderedDict([("enh", enh()), *self.g_a.named_children()]))
            self.g_s = nn.Sequential(OrderedDict([*self.g_s.named_children(), ("enh", enh())]))

    @staticmethod
    def _latent(cfg: S2licConfig, init_log_gain: Tensor, inference: bool) -> ACGCChannel:
        return ACGCChannel(cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, init_log_gain, inference, cfg.lrp,
                           cfg.pa_hidden, cfg.skip_zero, cfg.acgc_dim, cfg.acgc_hidden, cfg.acgc_window)
