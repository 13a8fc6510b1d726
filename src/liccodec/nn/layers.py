"""Small building blocks shared by the architectures."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.fixedpoint import BELOW


def conv(c_in: int, c_out: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


def deconv(c_in: int, c_out: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        c_in, c_out, kernel, stride=stride, output_padding=stride - 1, padding=kernel // 2
    )


class WidenedConv2d(nn.Conv2d):
    """A stride-1 convolution over ``concat(x, e)``: ``c_in`` inputs ``x`` that a narrower
    layer already had, under that layer's names (``weight``, ``bias``), and ``c_extra`` new
    inputs ``e`` with their own weights (``extra``, no bias of their own).

    It computes ``conv(x; weight, bias) + conv(e; extra)``, so shipped weights of the narrower
    layer load as they are. ``extra`` starts at zero: until it has learned, the output is the
    narrower layer's bit for bit whatever the new inputs carry (``conv(e; 0) = 0`` exactly), and
    so is its integer export (the same weights, hence the same shift). It exports as one
    integer layer over the concatenation (:meth:`to_integer`) and is rebuilt from one
    (:meth:`from_integer`, what a warm start calls)."""

    def __init__(self, c_in: int, c_extra: int, c_out: int, kernel: int = 3):
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        self.extra = nn.Parameter(torch.zeros(c_out, c_extra, kernel, kernel))

    def forward(self, x: Tensor) -> Tensor:
        c = self.in_channels
        # the narrow part as its own contiguous tensor: the same call, hence the same sums,
        # as the narrower layer makes on that input
        return super().forward(x[:, :c].contiguous()) + F.conv2d(x[:, c:], self.extra.to(x.dtype), None,
                                                                  padding=self.padding)

    def to_integer(self, relu: bool) -> list:
        """One integer layer over ``concat(x, e)`` (``IntegerNet.from_float`` calls this)."""
        from liccodec.nn.integer import IntLayer

        plain = nn.Conv2d(self.in_channels + self.extra.shape[1], self.out_channels, self.kernel_size,
                          padding=self.padding)
        with torch.no_grad():
            plain.weight.copy_(torch.cat([self.weight, self.extra], dim=1))
            plain.bias.copy_(self.bias)
        return [IntLayer.from_float(plain, relu, "widened convolution")]

    def from_integer(self, weight: Tensor, bias: Tensor) -> dict[str, Tensor]:
        """Float parameters (names relative to the layer) from an exported layer's dequantized
        ``weight`` and ``bias``: over ``concat(x, e)``, or over ``x`` alone (the narrower
        layer's export, whose ``extra`` then keeps its initialisation)."""
        c = self.in_channels
        if weight.shape[1] not in (c, c + self.extra.shape[1]):
            raise ValueError(f"an integer layer of {weight.shape[1]} inputs does not fit {c} + {self.extra.shape[1]}")
        out = {"weight": weight[:, :c], "bias": bias}
        if weight.shape[1] > c:
            out["extra"] = weight[:, c:]
        return out


def correction_net(c_in: int, hidden: int, c_out: int, kernel: int = 3, c_extra: int = 0) -> nn.Sequential:
    """Three ``kernel`` x ``kernel`` convolutions with ReLUs between; the last starts at zero,
    so a freshly built network is a zero correction (what lets a richer entropy model start
    exactly where the model it extends stands). ``c_extra`` > 0 appends that many inputs
    through a :class:`WidenedConv2d`: the network of ``c_in`` inputs plus new ones that
    change nothing until their weights have learned."""
    first = WidenedConv2d(c_in, c_extra, hidden, kernel) if c_extra else conv(c_in, hidden, kernel, 1)
    net = nn.Sequential(
        first, nn.ReLU(inplace=True),
        conv(hidden, hidden, kernel, 1), nn.ReLU(inplace=True),
        conv(hidden, c_out, kernel, 1),
    )
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def native_bf16() -> bool:
    """True where oneDNN runs bf16 natively (AVX512-BF16 / AMX); elsewhere bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def transform_precision(device: torch.device, precision: str):
    """Autocast context for the float transforms: "fp32", "bf16", or "auto" (bf16 if native)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" or native_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


class GainUnits(nn.Module):
    """Per-channel gain vectors for continuous variable rate.

    Cui et al., "Asymmetric Gained Deep Image Compression With Continuous Rate
    Adaptation", CVPR 2021. One (gain, inverse gain) pair of vectors per trained level;
    a fractional level interpolates *linearly* between its two neighbours. Linear (rather
    than the paper's geometric) interpolation needs only +, -, * on the decoder side, so
    the inverse gains that feed the entropy model can be reproduced bit-exactly on any
    IEEE-754 machine (see ``latent.hyperprior``). Gains are stored as logarithms so that
    they stay positive during training.
    """

    def __init__(self, levels: int, channels: int, init_log_gain: Tensor | None = None, below: str = "geometric"):
        super().__init__()
        if below not in ("geometric", "linear"):
            raise ValueError(f"below must be 'geometric' or 'linear', not {below!r}")
        self.below = below
        init = torch.zeros(levels, channels)
        if init_log_gain is not None:
            init = init + init_log_gain.reshape(levels, 1)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())

    @property
    def levels(self) -> int:
        return self.log_gain.shape[0]

    def _interp(self, table: Tensor, level: Tensor) -> Tensor:
        # level: (B,) float in [-BELOW, levels-1] -> (B, C, 1, 1). Below level 0 (qualities
        # under 1, never trained) it extrapolates from levels 0 and 1: geometrically, which
        # kept a log-linear rate-PSNR curve for charm.mse's y gains where linear lost 0.7 dB
        # at level -1 (session 29, docs/training-history.md), or linearly for the hyper-gains,
        # whose inverse the decoder extrapolates in integers (runtime.hyper_params).
        top = table.shape[0] - 1
        level = level.clamp(-BELOW if top > 0 else 0, top)
        lo = level.floor().long().clamp(min=0, max=max(top - 1, 0))
        t = (level - lo.to(level.dtype)).unsqueeze(1)
        hi = (lo + 1).clamp(max=top)
        out = table[lo] + t * (table[hi] - table[lo])
        if self.below == "geometric" and top > 0 and bool((t < 0).any()):
            out = torch.where(t < 0, table[0] * (table[1] / table[0]) ** t, out)
        return out[:, :, None, None]

    def forward(self, level: Tensor) -> tuple[Tensor, Tensor]:
        """Return (gain, inverse_gain), each (B, C, 1, 1), for fractional levels."""
        return (
            self._interp(self.log_gain.exp(), level),
            self._interp(self.log_inv_gain.exp(), level),
        )


class _LowerBound(torch.autograd.Function):
    """max(x, bound), letting gradients through where they push x back up (Balle et al.)."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor | float) -> Tensor:
        bound_t = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
        ctx.save_for_backward(x, bound_t)
        return torch.max(x, bound_t)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, bound = ctx.saved_tensors
        passes = (x >= bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: Tensor, bound: Tensor | float) -> Tensor:
    return _LowerBound.apply(x, bound)


class _LowerBoundModule(nn.Module):
    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: Tensor) -> Tensor:
        return lower_bound(x, self.bound)


class _NonNegative(nn.Module):
    """Parametrize a non-negative tensor as ``max(p, bound)**2 - pedestal``."""

    def __init__(self, minimum: float = 0.0, offset: float = 2**-18):
        super().__init__()
        self.register_buffer("pedestal", torch.tensor([offset**2]))
        self.lower_bound = _LowerBoundModule((minimum + offset**2) ** 0.5)

    def init(self, x: Tensor) -> Tensor:
        return torch.sqrt(torch.max(x + self.pedestal, self.pedestal))

    def forward(self, p: Tensor) -> Tensor:
        return self.lower_bound(p) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Balle, Laparra, Simoncelli, ICLR 2016).

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; with ``inverse`` it multiplies
    instead (IGDN). Same parameters, buffers and state-dict keys as CompressAI's GDN, so
    checkpoints move between the two, but importing it does not import CompressAI (whose
    package import takes seconds).
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = _NonNegative(beta_min)
        self.gamma_reparam = _NonNegative()
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def axis_ops(self) -> tuple:
        """Pointwise in space: no receptive field of its own (``liccodec.tiling``)."""
        return ()

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma.to(x.dtype), beta.to(x.dtype))
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))
