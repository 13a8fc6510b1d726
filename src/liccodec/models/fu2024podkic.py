"""PO-DKIC (Fu, Zhang, Wang, Chen, "Perceptual-oriented Learned Image Compression with Dynamic
Kernel", arXiv 2401.13967, 2024): dynamic-kernel residual block groups in the transforms of
``charm``, for perceptual fine-tuning (LPIPS + relativistic PatchGAN, ``liccodec.train.perceptual``;
the rate-switched rate weight, ``TrainConfig.rate_target``).

    x --g_a [groups at dyn_ga_at; none by default]--> y --[charm's ChannelConditional]--> y_hat
      --g_s [group at dyn_gs_at, default the 1/8 stage]--> x_hat

What is built and what is not (docs/models/podkic.md):

* The groups are ``liccodec.nn.dynamic.DynamicResidualGroup``: dynamic residual blocks whose
  kernels are a per-image mixture of K candidates (attention over kernels, Chen et al. 2020),
  not the paper's light deformable convolution; every group of a transform is routed by one
  descriptor of that transform's input, which keeps tiled coding exact.
* The entropy model is charm's. The paper's asymmetric space-channel context (from DKIC) is
  not built yet; neither is its integer-programming bit allocation across images.

Warm starts. g_a and g_s are ``RoutedSequential``\\ s holding charm's layers under charm's
names (``g_s.0`` .. ``g_s.6``); the groups are extra entries (``g_s.dyn8``, ...) whose last
layer starts at zero, so with ``init`` = a shipped charm model every output, the rate
estimate included, is exactly that model's at step 0.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.models.minnen2018 import GA_STAGE_END, GS_STAGE_END, with_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn import transform_precision
from liccodec.nn.dynamic import DynamicResidualGroup, RoutedSequential
from liccodec.tiling import Geometry, TilePolicy, run_tiled

#: strides (image pixels per position) where a group may sit, and the index of the layer of
#: msh's g_a / g_s it follows (-1: in front of layer 0, i.e. on y_hat itself)
_GA_STAGE = GA_STAGE_END
_GS_STAGE = GS_STAGE_END


@dataclass
class PoDkicConfig(CharmConfig):
    # strides at which g_s (behind its upsampling stage; 16 = on y_hat) and g_a (behind its
    # downsampling stage; 16 = on y) get a dynamic-kernel residual block group
    dyn_gs_at: tuple[int, ...] = field(default_factory=lambda: (8,))
    dyn_ga_at: tuple[int, ...] = ()
    dyn_blocks: int = 2          # dynamic residual blocks per group
    dyn_kernels: int = 4         # K candidate kernels per dynamic convolution
    dyn_kernel: int = 3          # their spatial size
    dyn_groups: int = 1          # channel groups of each dynamic convolution (C: depthwise)
    dyn_temperature: float = 1.0


def _with_groups(seq: nn.Sequential, stage_end: dict[int, int], widths: dict[int, int], at, ctx_dim: int,
                 cfg: PoDkicConfig, what: str) -> RoutedSequential:
    """``seq`` as a RoutedSequential with a group after the stage of each stride in ``at``."""
    return with_stage_blocks(
        seq, stage_end, at,
        lambda s: [(f"dyn{s}", DynamicResidualGroup(widths[s], ctx_dim, cfg.dyn_blocks, cfg.dyn_kernel,
                                                   cfg.dyn_kernels, cfg.dyn_groups,
                                                   temperature=cfg.dyn_temperature))],
        what, container=RoutedSequential)


@register_arch("podkic", config=PoDkicConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True,
                         dyn_gs_at=[16, 8], dyn_ga_at=[4], dyn_blocks=1, dyn_kernels=2),
               summary="charm + dynamic-kernel residual block groups in g_s/g_a (PO-DKIC, Fu 2024)")
class PoDkic(ChannelConditionalCodec):
    """Variable-rate charm with dynamic-kernel residual block groups. ``level`` is a float in
    [0, levels-1] per image."""

    def __init__(self, cfg: PoDkicConfig, inference: bool = False):
        super().__init__(cfg, inference)
        s1, s2, s3 = cfg.synthesis or (cfg.N, cfg.N, cfg.N)
        # reassigning keeps g_a and g_s in their registration slots (state-dict order)
        self.g_a = _with_groups(self.g_a, _GA_STAGE, {2: cfg.N, 4: cfg.N, 8: cfg.N, 16: cfg.M},
                                cfg.dyn_ga_at, 6, cfg, "dyn_ga_at")
        self.g_s = _with_groups(self.g_s, _GS_STAGE, {16: cfg.M, 8: s1, 4: s2, 2: s3},
                                cfg.dyn_gs_at, 2 * cfg.M, cfg, "dyn_gs_at")

    # Tiled coding runs g_a / g_s on tiles; the groups must see the whole image's
    # descriptor, so it is pinned from the whole input before the tiles run.
    @torch.no_grad()
    def analysis(self, x: Tensor, precision: str = "fp32", tiles: TilePolicy | None = None) -> Tensor:
        with self.g_a.pinned(x) if self.g_a.has_groups() else nullcontext():
            return super().analysis(x, precision, tiles)

    @torch.no_grad()
    def decompress(self, streams: dict[str, bytes], hw: tuple[int, int], q_milli: int,
                   precision: str = "fp32", tiles: TilePolicy | None = None,
                   qmap: np.ndarray | None = None) -> Tensor:
        tiles = TilePolicy.from_env() if tiles is None else tiles
        if not (self.g_s.has_groups() and tiles.applies(*hw)):
            return super().decompress(streams, hw, q_milli, precision, tiles, qmap)
        latent_hw = (hw[0] // self.downsampling, hw[1] // self.downsampling)
        y_hat = self.latent.decompress(streams, latent_hw, q_milli, tiles.core(self.y_stride), qmap)
        with self.g_s.pinned(y_hat), transform_precision(y_hat.device, precision):
            return run_tiled(self._synthesis, y_hat, Geometry.of(self.g_s), tiles.core(self.y_stride))
