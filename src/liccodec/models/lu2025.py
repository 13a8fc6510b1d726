"""DCAE (Lu et al., "Learned Image Compression with Dictionary-based Entropy Model", CVPR 2025,
arXiv 2504.00496): the dictionary-based cross-attention entropy model
(``liccodec.latent.dictionary``) on the transforms and hyperprior of ``charm``.

    x --g_a--> y --[DictionaryChannel: hyperprior + slices, each slice network also reading
                    a cross-attention of its context over a learned dictionary]--> y_hat --g_s--> x_hat

One switch makes the paper's ablation one flag: ``dictionary`` (off: charm's slice networks
alone, which is exactly the ``charm`` model of the same config).

Warm starts. Everything charm has keeps charm's names and shapes (the slice networks' first
layers keep charm's weights under charm's names, ``nn.layers.WidenedConv2d``); the dictionary
and the attention sites are new, and the sites' output projections start at zero. So with
``init`` = a shipped ``charm`` model, step 0 is that model exactly: every output, the rate
estimate included, and the exported files.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from liccodec.latent.channelwise import ChannelConditional
from liccodec.latent.dictionary import DictionaryChannel
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch


@dataclass
class DcaeConfig(CharmConfig):
    dictionary: bool = True   # the dictionary cross-attention (False: charm's slice networks alone)
    dict_size: int = 128      # dictionary entries (the paper's 128)
    dict_dim: int = 128       # width of an entry, split among the heads (the paper: 640 = 20 x 32)
    dict_heads: int = 4       # attention heads
    dict_out: int = 32        # channels each attention site adds to its slice network's input


@register_arch("dcae", config=DcaeConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True,
                         dict_size=16, dict_dim=16, dict_heads=2, dict_out=4),
               summary="charm + dictionary cross-attention in the slice networks (DCAE, Lu 2025)")
class DictionaryCodec(ChannelConditionalCodec):
    """Variable-rate DCAE. ``level`` is a float in [0, levels-1] per image."""

    @staticmethod
    def _latent(cfg: DcaeConfig, init_log_gain: Tensor, inference: bool) -> ChannelConditional:
        if not cfg.dictionary:
            return ChannelConditional(cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, init_log_gain,
                                      inference, cfg.lrp)
        return DictionaryChannel(cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, cfg.dict_size, cfg.dict_dim,
                                 cfg.dict_heads, cfg.dict_out, init_log_gain, inference, cfg.lrp)
