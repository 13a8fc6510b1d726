"""Frequency decomposition modulation (FDM), after ICISP (Wei et al. 2025, arXiv 2502.13988).

The paper's observation: low and high frequencies do not matter equally to a codec, so a
block should be able to keep or damp each one on its own. FDM here splits a feature map
into a low band and a high band, scales every channel of each band by a weight computed
from the image's own statistics, and adds the result back as a zero-start residual::

    x -> LayerNorm -> n ;  low = up(avgpool2x2(n)),  high = n - low
    (mean(low), rms(high)) over the image -> MLP -> (w_low, w_high), 2 sigmoid
    out = x + 1x1(w_low * low + w_high * high)

``up(avgpool2x2(.))`` (nearest upsampling of 2x2 means) is exactly the one-level Haar
reconstruction from the LL band alone, so low and high are the Haar split of ``n``
without the lifting. The last 1x1 starts at zero: a new block is the identity. The image
statistics make the block global: like a scan, it cannot be tiled (it has no ``axis_ops``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.nn.vss import LayerNorm2d


def haar_split(x: Tensor) -> tuple[Tensor, Tensor]:
    """(low, high) with low the Haar LL reconstruction (2x2 block means) and high = x - low.
    H and W must be even."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"haar_split needs even sides, got {tuple(x.shape[-2:])}")
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    return low, x - low


class FDM(nn.Module):
    """Content-adaptive per-channel gains on the low and the high band, as a residual."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        c, hidden = channels, max(8, channels // reduction)
        self.norm = LayerNorm2d(c)
        self.gains = nn.Sequential(nn.Linear(2 * c, hidden), nn.SiLU(), nn.Linear(hidden, 2 * c))
        self.out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        n = self.norm(x)
        low, high = haar_split(n)
        stats = torch.cat([low.mean((2, 3)), high.float().pow(2).mean((2, 3)).add(1e-6).sqrt().to(low.dtype)], 1)
        w_low, w_high = (2 * torch.sigmoid(self.gains(stats))).chunk(2, dim=1)
        r = w_low[:, :, None, None] * low + w_high[:, :, None, None] * high
        return x + self.out(r.to(x.dtype))
