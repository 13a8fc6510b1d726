"""Post-quantization filter (PQF): a small residual network on the decoded latent.

Fu, Liang, Liang, Li, Zhang, Han, "Asymmetric Learned Image Compression with Multi-Scale
Residual Block, Importance Map, and Post-Quantization Filtering" (arXiv 2206.10618): after
rounding, y_hat differs from y by up to half a step everywhere; a filter on y_hat, before
the synthesis, removes the part of that error its neighbourhood predicts, as the sample
adaptive offset (SAO) of video coding does on pixels::

    y_hat -> 3x3 (M -> h) -> PReLU -> 3x3 (h -> h) -> PReLU -> 3x3 (h -> M) -> r
    y_hat' = y_hat + r

It is decoder-side float work on the latent, so it sets no coding parameter and needs no
integer form: the latents the entropy decoder rebuilds are untouched, only what the
synthesis draws from them changes. The last convolution starts at zero (a new filter is the
identity). Its convolutions declare their own receptive field (three 3x3s: 3 latent
positions on each side), so it tiles like the synthesis behind it.
"""
from __future__ import annotations

from torch import Tensor, nn


class PostQuantFilter(nn.Module):
    """``y_hat + net(y_hat)``, three 3x3 convolutions of width ``hidden`` with PReLUs."""

    def __init__(self, channels: int, hidden: int = 64, kernel: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel, padding=kernel // 2), nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2), nn.PReLU(hidden),
            nn.Conv2d(hidden, channels, kernel, padding=kernel // 2),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y_hat: Tensor) -> Tensor:
        return y_hat + self.net(y_hat).to(y_hat.dtype)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [(False, m.kernel_size[0], 1, m.padding[0]) for m in self.net if isinstance(m, nn.Conv2d)]
