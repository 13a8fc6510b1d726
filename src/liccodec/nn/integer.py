"""Exact integer inference for the hyper-synthesis (Balle, Johnston, Minnen, "Integer
networks for data compression with latent-variable models", ICLR 2019).

Everything that decides the entropy coder's parameters must come out bit-identical on
every machine, thread count and batch size. A float (de)conv/ReLU stack is exported as:

* integer weights ``W_q = round(W * 2**s)`` (``|W_q| < 2**15``, one shift ``s`` per layer),
* integer activations with ``ACT_BITS`` fractional bits, clipped to ``+-ACT_CLIP``,
* integer biases at the accumulator's scale ``2**(s + ACT_BITS)``,
* requantization by a rounding arithmetic right shift.

The accumulation itself runs as a float64 convolution over integer-valued tensors. That
is exact whatever the summation order, because export checks that every partial sum is
below 2**53 (so no rounding ever happens), and so is the requantization that follows on
those values (``liccodec.runtime.IntegerLayer`` says why). The arithmetic itself is
``liccodec.runtime.IntegerLayer``'s, the numpy decoder's: these classes export, store and
call it, so the encoder and the decoder run one implementation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.fixedpoint import ACT_BITS, ACT_CLIP, EXACT_LIMIT, W_LIMIT

__all__ = ["ACT_BITS", "ACT_CLIP", "EXACT_LIMIT", "W_LIMIT", "IntLayer", "IntegerNet"]


@dataclass
class IntLayer:
    kind: str          # "conv" or "deconv"
    weight: Tensor     # int64
    bias: Tensor       # int64, at scale 2**(shift + ACT_BITS)
    shift: int
    stride: int
    padding: int
    output_padding: int
    relu: bool

    @classmethod
    def from_float(cls, m: nn.Conv2d | nn.ConvTranspose2d, relu: bool, where: str = "layer") -> "IntLayer":
        """Quantize one float (transposed) convolution, checking that it stays exact."""
        w = m.weight.detach().double()
        shift = min(24, W_LIMIT.bit_length() - 1 - math.ceil(math.log2(w.abs().max().item() + 1e-30)))
        wq = torch.round(w * 2.0**shift).to(torch.int64).clamp(-W_LIMIT, W_LIMIT)
        b = m.bias.detach().double() if m.bias is not None else torch.zeros(wq.shape[0 if isinstance(m, nn.Conv2d) else 1])
        bq = torch.round(b * 2.0 ** (shift + ACT_BITS)).to(torch.int64)
        kind = "conv" if isinstance(m, nn.Conv2d) else "deconv"
        # worst-case accumulator magnitude per output channel must stay exactly representable
        per_out = wq.abs().sum(dim=(1, 2, 3)) if kind == "conv" else wq.abs().sum(dim=(0, 2, 3))
        worst = per_out.max().item() * ACT_CLIP + bq.abs().max().item()
        if worst >= EXACT_LIMIT:
            raise ValueError(f"{where}: accumulator bound 2^{math.log2(worst):.1f} is not exact in float64")
        op = m.output_padding[0] if kind == "deconv" else 0
        return cls(kind, wq, bq, shift, m.stride[0], m.padding[0], op, relu)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """(transposed, kernel, stride, padding) along each axis (``liccodec.tiling``)."""
        k = self.weight.shape[-1]
        if self.weight.shape[-2] != k:
            raise ValueError("tiling needs square kernels")
        return [(self.kind == "deconv", k, self.stride, self.padding)]

    @cached_property
    def _exact(self):
        from liccodec.runtime import IntegerLayer

        return IntegerLayer.build(self.kind == "deconv", self.weight.numpy(), self.bias.numpy(), self.shift,
                                  self.stride, self.padding, self.output_padding, self.relu)

    def __call__(self, x: Tensor) -> Tensor:
        """(B, Ci, H, W) int64 -> (B, Co, Ho, Wo) int64 (the input is not clipped here)."""
        out = [self._exact(image.permute(1, 2, 0).numpy().astype(np.float64)).transpose(2, 0, 1)
               for image in x.to(torch.int64)]
        return torch.from_numpy(np.stack(out).astype(np.int64))


class IntegerNet:
    """A chain of :class:`IntLayer`; input and output carry ``ACT_BITS`` fractional bits."""

    def __init__(self, layers: list[IntLayer]):
        self.layers = layers

    @cached_property
    def _exact(self):
        from liccodec.runtime import IntegerChain

        return IntegerChain([layer._exact for layer in self.layers])

    def __call__(self, x: Tensor) -> Tensor:
        """Input clipped to +-ACT_CLIP, then every layer (``liccodec.runtime.IntegerChain``)."""
        return torch.from_numpy(self._exact(x.to(torch.int64).numpy()))

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [op for layer in self.layers for op in layer.axis_ops()]

    @classmethod
    def from_float(cls, seq: nn.Sequential) -> "IntegerNet":
        """Export a float chain. (Transposed) convolutions export here, a ReLU folds into the
        layer before it (a clip at zero); any other module declares its own export with a
        method ``to_integer(relu: bool) -> list[IntLayer]`` (``relu``: a ReLU follows it),
        or the chain cannot be exported."""
        mods = list(seq)
        layers: list[IntLayer] = []
        for i, m in enumerate(mods):
            if isinstance(m, nn.ReLU):
                if i == 0 or isinstance(mods[i - 1], nn.ReLU):
                    raise ValueError(f"module {i}: a ReLU exports only right after a layer")
                continue
            relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
            export = getattr(m, "to_integer", None)
            if callable(export):
                layers += export(relu)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                layers.append(IntLayer.from_float(m, relu, f"layer {i}"))
            else:
                raise ValueError(f"cannot export {type(m).__name__} to integers: give it a "
                                 "to_integer(relu) method (liccodec.nn.integer)")
        return cls(layers)

    # ---- (de)serialization as flat tensors (safetensors) ----
    def to_tensors(self, prefix: str) -> dict[str, Tensor]:
        out = {}
        for i, l in enumerate(self.layers):
            # |W_q| <= W_LIMIT = 2**15 - 1: int16 holds it exactly, at half int32's bytes (exports
            # before session 20 wrote int32; the loaders widen either to int64)
            out[f"{prefix}.{i}.weight"] = l.weight.to(torch.int16)
            out[f"{prefix}.{i}.bias"] = l.bias
            out[f"{prefix}.{i}.meta"] = torch.tensor(
                [l.kind == "deconv", l.shift, l.stride, l.padding, l.output_padding, l.relu], dtype=torch.int64)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], prefix: str) -> "IntegerNet":
        layers, i = [], 0
        while f"{prefix}.{i}.weight" in tensors:
            meta = tensors[f"{prefix}.{i}.meta"].tolist()
            layers.append(IntLayer("deconv" if meta[0] else "conv", tensors[f"{prefix}.{i}.weight"].to(torch.int64),
                                   tensors[f"{prefix}.{i}.bias"].to(torch.int64), int(meta[1]), int(meta[2]),
                                   int(meta[3]), int(meta[4]), bool(meta[5])))
            i += 1
        if not layers:
            raise KeyError(f"no integer layers under {prefix!r}")
        return cls(layers)
