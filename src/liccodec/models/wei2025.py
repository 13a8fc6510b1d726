"""ICISP transforms (Wei, Zhou, Jia, Ge, Anwar, Mian, "A Lightweight Model for Perceptual
Image Compression via Implicit Priors", arXiv 2502.13988, 2025): enhanced visual state space
blocks (EVSS, ``liccodec.nn.vss``) and frequency decomposition modulation blocks (FDM,
``liccodec.nn.fdm``) in charm's transforms; charm's entropy model unchanged.

    x --g_a [optional EVSS+FDM after chosen stages]--> y
      --[charm: hyperprior + channel slices]--> y_hat
      --g_s [deconv to 1/8, GDN, EVSS, FDM, deconv to 1/4, GDN, (EVSS, FDM,) deconv, GDN, deconv]--> x_hat

Default placement: g_s only, after its 1/8 stage (``evss_gs = (8,)``), because the
perceptual model trains g_s alone behind charm.mse's frozen encoder and entropy model.
``evss_gs = [8, 4]`` adds a pair after the 1/4 stage (the paper's decoder has blocks at
every scale), ``evss_ga`` puts blocks in g_a too. Cost decided the default (see
docs/models/icisp.md): with charm.mse's widths, one training step of 8 crops of 256x256
costs about 1.6x charm's with a full-width (``evss_expand = 1``) block at 1/8, 4.7x with
blocks at 1/8 and 1/4, and 1.15-1.3x with the default half-width block at 1/8 alone.

Warm starts. g_a and g_s keep charm's layers under charm's names (``g_s.0`` .. ``g_s.6``);
the blocks are extra entries (``g_s.evss8``, ``g_s.fdm8``; with more placements
``g_s.evss4``, ``g_a.evss8`` ...) whose output convolution starts at zero, so with ``init`` = a shipped
charm model the whole model is exactly that model at step 0 (tested).

What follows the paper: an EVSS block is a residual block around a four-direction selective
scan (VMamba's SS2D: input-dependent delta, B, C; diagonal A < 0; D skip) plus a local
convolutional branch added before the output norm and gate ("local and global" spatial
dependencies); an FDM block separates low and high frequencies and weighs them adaptively;
EVSS is followed by FDM, as in the paper's encoder/decoder blocks.

What was changed, and why:

- **Base network.** The paper builds its own encoder/decoder from these blocks (and a
  DINOv2-based discriminator, which is training, not architecture). Here they are inserted
  into charm's GDN transforms so that ``charm.mse`` warm-starts them and its encoder and
  entropy model can stay frozen.
- **Zero start.** Every block's last 1x1 convolution starts at zero (identity at init).
- **Cheaper EVSS.** Inner width half the stage's (``evss_expand = 0.5``; the authors' code
  uses 1.5), d_state 8 (16 there), the
  local branch is depthwise (dw3x3, SiLU, dw3x3; two full 3x3 convolutions in the authors'
  code), and the scan is a chunked pure-PyTorch scan (no CUDA kernel on a CPU) with one
  decay rate per channel shared by its states (Mamba-2's tying; Mamba-1/VMamba have one
  per state), which turns each chunk into matrix products, about 10 times faster here. The
  log-decay of a step is clamped at -60/chunk so the chunked form stays in float32's
  normal range (``liccodec.nn.vss``).
- **Cheaper FDM.** Content-adaptive per-channel gains on the Haar low band and the
  remainder, from the image's band statistics. The authors' released code instead runs a
  feed-forward layer, a Haar DWT and one SS2D on the LL band and one on the three high
  bands; that is two more scans per block, too costly for CPU training here.
- **No tiling of the transforms that hold blocks.** A scan and image-wide statistics have no
  bounded receptive field, so those transforms always run on the whole image
  (:meth:`ICISP.decompress`, :meth:`ICISP.analysis`); the latent codec still tiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.models.minnen2018 import add_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn import transform_precision
from liccodec.nn.fdm import FDM
from liccodec.nn.vss import EVSS
from liccodec.tiling import Geometry, TilePolicy

#: name prefixes of the blocks inside g_a / g_s
BLOCK_NAMES = ("evss", "fdm")


@dataclass
class ICISPConfig(CharmConfig):
    # strides after whose g_s upsampling stage an EVSS + FDM pair sits; () for none
    evss_gs: tuple[int, ...] = field(default_factory=lambda: (8,))
    # the same for g_a's downsampling stages (off by default: the encoder stays charm's)
    evss_ga: tuple[int, ...] = ()
    evss_state: int = 8       # SSM state size per channel
    evss_expand: float = 0.5  # EVSS inner width / stage width (1.0: ~1.6x charm's step)
    evss_chunk: int = 32      # positions per chunk of the parallel scan
    fdm: bool = True          # an FDM block after each EVSS block


def _charm_layers(seq: nn.Sequential) -> list[nn.Module]:
    return [m for name, m in seq.named_children() if not name.startswith(BLOCK_NAMES)]


@register_arch("icisp", config=ICISPConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True,
                         evss_ga=[8], evss_state=4, evss_chunk=8),
               summary="charm + EVSS (2D selective scan) and FDM blocks in the transforms (ICISP, Wei 2025)")
class ICISP(ChannelConditionalCodec):
    """Variable-rate charm with ICISP blocks. ``level`` is a float in [0, levels-1] per image."""

    def __init__(self, cfg: ICISPConfig, inference: bool = False):
        super().__init__(cfg, inference)
        def blocks(s: int, c: int) -> list[tuple[str, nn.Module]]:  # EVSS (+ FDM) behind a stage
            out = [(f"evss{s}", EVSS(c, cfg.evss_state, cfg.evss_expand, cfg.evss_chunk))]
            return out + [(f"fdm{s}", FDM(c))] if cfg.fdm else out

        add_stage_blocks(self, blocks, cfg.evss_ga, cfg.evss_gs, "evss_ga", "evss_gs")

    @cached_property
    def y_stride(self) -> int:
        # the blocks keep the resolution; charm's convolutions set the stride
        return Geometry.of(*_charm_layers(self.g_a)).down

    # A global scan cannot be cut into tiles exactly: a transform that holds blocks runs on
    # the whole image; the latent codec (hyperprior, slices) still tiles as in charm.
    def _whole(self, seq: nn.Sequential, tiles: TilePolicy | None) -> TilePolicy | None:
        has_blocks = any(name.startswith(BLOCK_NAMES) for name, _ in seq.named_children())
        return TilePolicy.never() if has_blocks else tiles

    @torch.no_grad()
    def analysis(self, x: Tensor, precision: str = "fp32", tiles: TilePolicy | None = None) -> Tensor:
        return super().analysis(x, precision, self._whole(self.g_a, tiles))

    @torch.no_grad()
    def decompress(self, streams: dict[str, bytes], hw: tuple[int, int], q_milli: int,
                   precision: str = "fp32", tiles: TilePolicy | None = None,
                   qmap: np.ndarray | None = None) -> Tensor:
        if self._whole(self.g_s, tiles) is tiles:
            return super().decompress(streams, hw, q_milli, precision, tiles, qmap)
        tiles = TilePolicy.from_env() if tiles is None else tiles
        latent_hw = (hw[0] // self.downsampling, hw[1] // self.downsampling)
        tile = tiles.core(self.y_stride) if tiles.applies(*hw) else None
        y_hat = self.latent.decompress(streams, latent_hw, q_milli, tile, qmap)
        with transform_precision(y_hat.device, precision):
            return self._synthesis(y_hat)
