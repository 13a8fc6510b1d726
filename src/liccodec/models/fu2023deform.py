"""Fu et al., "Fast and high-performance learned image compression with improved
checkerboard context model, deformable residual module, and knowledge distillation", IEEE
TIP 2024 (arXiv 2309.02529), on the transforms and hyperprior of ``charm``:

    x --g_a [deformable residual modules behind the inner stages]--> y
      --[SliceCheckerboard: hyperprior; charm's slices, each anchors then non-anchors with a
         parameter network per pass; all-zero channels flagged, not coded]--> y_hat
      --g_s [deformable residual modules]--> x_hat

* ``nn.deformable.DeformableResidual``: the paper's deformable residual module (DRM), a
  residual block around a 3x3 deformable convolution with bounded offsets;
* ``latent.slicecheckerboard.SliceCheckerboard``: the paper's improved checkerboard context
  (two separate parameter networks, anchors and non-anchors) inside charm's channel slices,
  and its zero-channel skipping;
* the paper's L1 penalty on the latent, which makes channels all zero, is a training loss
  term: :meth:`DeformCodec.regularizer`, which the trainer adds to the loss when
  ``l1_weight`` > 0. The paper's knowledge distillation is the trainer's own
  (``liccodec.train.distill``), not part of the architecture.

Warm starts. g_a and g_s keep charm's layers under charm's names; the DRMs are extra entries
(``g_a.drm8``, ...) whose offsets and last layer start at zero, the latent keeps charm's
gains, h_a, h_s, z prior, slice networks (``cc``) and residual prediction, and its new
networks (``sp``, ``pa_a``, ``pa_n``) start as a zero correction. So with ``init`` = a
shipped ``charm`` model, step 0 gives that model's reconstruction and likelihoods bit for
bit (tested); only the coded files differ, by the zero-channel flags and the order of the
symbols.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from liccodec.latent.slicecheckerboard import SliceCheckerboard
from liccodec.models.base import CodecOut
from liccodec.models.minnen2018 import add_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn.deformable import DeformableResidual


@dataclass
class DeformConfig(CharmConfig):
    # the strides at which g_a (after its downsampling stage) and g_s (after its upsampling
    # stage) get a DRM; 2, 4 and 8 are possible (the paper has one per stage)
    deform_ga_at: tuple[int, ...] = field(default_factory=lambda: (4, 8))
    deform_gs_at: tuple[int, ...] = field(default_factory=lambda: (8, 4))
    max_offset: float = 2.0    # a deformable tap moves at most this many positions
    pa_hidden: int = 64        # width of the anchor and non-anchor parameter networks (1x1)
    skip_zero: bool = True     # flag all-zero channels of y and leave them out of the stream
    l1_weight: float = 0.0     # weight of the L1 term on the latent (the trainer adds regularizer())


@register_arch("deform", config=DeformConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True, pa_hidden=8),
               summary="charm + deformable residual modules, two-network checkerboard in the slices, "
                       "zero-channel skipping (Fu 2023/TIP 2024)")
class DeformCodec(ChannelConditionalCodec):
    """Variable-rate codec of Fu et al. (TIP 2024) on charm. ``level`` is a float in
    [0, levels-1] per image."""

    def __init__(self, cfg: DeformConfig, inference: bool = False):
        super().__init__(cfg, inference)
        add_stage_blocks(self, lambda s, c: [(f"drm{s}", DeformableResidual(c, max_offset=cfg.max_offset))],
                         cfg.deform_ga_at, cfg.deform_gs_at, "deform_ga_at", "deform_gs_at")

    @staticmethod
    def _latent(cfg: DeformConfig, init_log_gain: Tensor, inference: bool) -> SliceCheckerboard:
        return SliceCheckerboard(cfg.N, cfg.M, cfg.levels, cfg.slices, cfg.hidden, init_log_gain, inference,
                                 cfg.lrp, cfg.pa_hidden, cfg.skip_zero)

    def regularizer(self, out: CodecOut) -> Tensor | None:
        """The paper's sparsity term, ``l1_weight`` times the mean |y_hat| of each image (B,),
        which the trainer adds to the rate-distortion loss; None while the weight is 0."""
        if self.cfg.l1_weight == 0:
            return None
        return self.cfg.l1_weight * self.latent.l1(out.y_hat)
