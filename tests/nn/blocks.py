"""What the tests of the zero-started residual blocks share (weconv, weconv3d, mbconv, dwan,
pqf): random weights for their zero layers, the identity check, and the receptive field
measured by gradients."""
from __future__ import annotations

import torch
from torch import nn


def live(block: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights for the zero-started output layers of ``block``."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.any():
                m.weight.normal_(0, 0.2)
                m.bias.normal_(0, 0.1)
    return block


def assert_starts_as_identity(block: nn.Module, channels: int) -> None:
    """A new block returns its input bit for bit, in fp32 and under bf16 autocast alike (so
    inserted into trained transforms it changes nothing), and its zero output layer
    ``block.out`` gets a gradient at once (so it trains)."""
    torch.manual_seed(1)
    x = torch.randn(2, channels, 16, 12) * 3
    with torch.no_grad():
        assert torch.equal(block(x), x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            xb = x.bfloat16()
            assert torch.equal(block(xb), xb) and block(xb).dtype == torch.bfloat16
    block(x).pow(2).sum().backward()
    assert block.out.weight.grad.abs().sum() > 0


def receptive_reach(block: nn.Module, channels: int, outputs=(18, 19), side: int = 40) -> int:
    """The farthest input (along the height) that the given outputs depend on, by gradients."""
    x = torch.zeros(1, channels, side, side, requires_grad=True)
    y = block(x + torch.randn(1, channels, side, side, generator=torch.Generator().manual_seed(1)))
    reach = 0
    for o in outputs:
        (g,) = torch.autograd.grad(y[0, :, o, o].sum(), x, retain_graph=True)
        rows = g.abs().sum(dim=(0, 1, 3)).nonzero()[:, 0]
        reach = max(reach, o - int(rows.min()), int(rows.max()) - o)
    return reach
