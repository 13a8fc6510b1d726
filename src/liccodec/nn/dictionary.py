"""Dictionary cross-attention: a learned dictionary of typical structures, queried at every
position of the latent by its context, with an exact integer path for the decoder.

Lu et al., "Learned Image Compression with Dictionary-based Entropy Model", CVPR 2025
(DCAE, arXiv 2504.00496). A dictionary ``D`` (``n`` entries of ``dim``) is a parameter,
learned with the codec and shared by every query site. One site (:class:`DictionaryAttention`,
one per channel slice in ``latent.dictionary``) computes, per position, with ``H`` heads of
``dk = dim / H`` channels::

    q   = query(ctx)                       conv 3x3, ReLU, conv 1x1: (B, dim, h, w)
    Dn  = LayerNorm(D)                     (n, dim)
    K_h = key(Dn)_h * exp(t_h) / sqrt(dk)  keys of head h, temperature t_h folded in
    V_h = Dn_h @ W_out_h^T                 values of head h, output projection folded in
    out = sum_h softmax_n(q_h . K_h) @ V_h + b_out                          (B, c_out, h, w)

``W_out`` is a 1x1 convolution over the heads' outputs. ``K_h``, ``V_h`` and ``b_out`` depend
on parameters only: export computes them once and quantizes them.

The exact path (:class:`IntegerDictionaryAttention`), integers only, on the same inputs the
integer slice networks see (``ACT_BITS`` fixed point)::

    q      = the query network as an integer network (nn.integer), clipped to +-ACT_CLIP
    l_n    = sum_d q_d * Kq_{n,d}                      Kq = round(K * 2^s), |Kq| <= W_LIMIT
    l_n    = (l_n + 2^(r-1)) >> r                      r = ACT_BITS + s - LOGIT_BITS: logits in 2^-8
    w_n    = E[min(max_m l_m - l_n, len(E) - 1)]       E[d] = round(2^16 exp(-d / 2^8)), stored
    out_c  = sum_h floor((2 num_hc + S_h) / (2 S_h)) + bq_c
             num_hc = sum_n w_n Vq_{h,n,c},  S_h = sum_n w_n       Vq = round(V * 2^10)
    out    = clip(out, +-ACT_CLIP)                                  (ACT_BITS fixed point)

``E`` ends at its first zero (d = 3017: weights below 2^-17 of the largest are dropped), and
the largest weight of every head is ``E[0] = 2^16``, so ``S_h > 0``. The division is exact
integer division with rounding half up: the softmax's normalisation without a float. The two
sums run as float64 matrix products over integers; export checks that every partial sum
stays below 2^53 (``dk * ACT_CLIP * W_LIMIT`` and ``n * 2^16 * ACT_CLIP``), so they are exact
whatever the summation order, as in ``nn.integer``. Each position is computed on its own,
so batches, position chunks and tiles give the same integers. Against the float softmax the
error is the logits' rounding (2^-9 nat, 0.2% of a weight), the table's (2^-17 of the
largest weight) and the values' (2^-11), far below what moves a scale index.

Departures from the paper, for the exact decoder and for warm starts:

* the query is a small conv/ReLU stack on the slice network's own context (the paper:
  a linear map, a multi-scale aggregation block and layer norms on the whole hyperprior
  output and the decoded slices): it must be an integer network;
* the attention output is one projection of the heads' outputs, folded into the values
  (the paper follows it with a residual MLP block, which would need an integer GELU and
  layer norm); the values are the normalised dictionary itself, as in the paper;
* what reads the output starts at zero (``latent.dictionary``), so a new site changes
  nothing until the layer after it has learned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.fixedpoint import ACT_BITS, ACT_CLIP, EXACT_LIMIT, EXP_BITS, LOGIT_BITS, W_LIMIT
from liccodec.nn.integer import IntegerNet
from liccodec.nn.layers import conv
from liccodec.tiling import axis_ops

#: positions per block of the exact path: bounds its buffers, changes no integer
CHUNK = 4096


def exp_table() -> np.ndarray:
    """E[d] = round(2^EXP_BITS exp(-d / 2^LOGIT_BITS)) for d = 0 .. its first zero, int64.
    Computed in float64 at export only; the decoder reads the stored table."""
    d = np.arange(64 << LOGIT_BITS, dtype=np.float64)
    e = np.round(np.exp(-d / (1 << LOGIT_BITS)) * (1 << EXP_BITS)).astype(np.int64)
    return e[:int(np.argmax(e == 0)) + 1]


class Dictionary(nn.Module):
    """The learned dictionary: ``weight`` (n, dim), standard normal at the start as the paper's
    (every site reads it through a layer norm). A module of its own, so that it sits in the
    state and the optimizer after the modules registered before it."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, dim))


class DictionaryAttention(nn.Module):
    """One query site: context (B, c_in, h, w) and the shared dictionary (n, dim) ->
    (B, c_out, h, w), float (training). See the module docstring."""

    def __init__(self, c_in: int, dim: int, heads: int, c_out: int, hidden: int, kernel: int = 3):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dictionary width {dim} does not split into {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.query = nn.Sequential(conv(c_in, hidden, kernel, 1), nn.ReLU(inplace=True), conv(hidden, dim, 1, 1))
        self.norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, dim)
        self.log_temperature = nn.Parameter(torch.zeros(heads))
        # the output projection (a 1x1 convolution over the heads' outputs, folded into the values)
        self.out = nn.Conv2d(dim, c_out, 1)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """The query network's receptive field: the attention itself is per position."""
        return axis_ops(self.query)

    def tables(self, dictionary: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(keys (H, n, dk), temperature folded in; values (H, n, c_out), output projection
        folded in; bias (c_out,)) from the dictionary: what export quantizes."""
        n, H, dk = dictionary.shape[0], self.heads, self.head_dim
        d = self.norm(dictionary)
        scale = self.log_temperature.exp() / math.sqrt(dk)
        keys = self.key(d).view(n, H, dk).transpose(0, 1) * scale.view(H, 1, 1)
        w = self.out.weight.view(-1, H, dk)
        values = torch.einsum("nhd,chd->hnc", d.view(n, H, dk), w)
        return keys, values, self.out.bias

    def forward(self, ctx: Tensor, dictionary: Tensor) -> Tensor:
        q = self.query(ctx)
        B, _, h, w = q.shape
        with torch.autocast(ctx.device.type, enabled=False):
            keys, values, bias = self.tables(dictionary.float())
            q = q.float().view(B, self.heads, self.head_dim, h * w)
            p = torch.einsum("bhdp,hnd->bhpn", q, keys).softmax(dim=-1)
            out = torch.einsum("bhpn,hnc->bcp", p, values) + bias.view(1, -1, 1)
        return out.view(B, -1, h, w)


@dataclass
class IntegerDictionaryAttention:
    """The exact form of a :class:`DictionaryAttention` (module docstring): numpy int64
    NCHW in, int64 NCHW out, both in ACT_BITS fixed point."""

    query: IntegerNet
    keys: Tensor       # (H, n, dk) int, at 2**key_shift
    key_shift: int
    values: Tensor     # (H, n, c_out) int, ACT_BITS fixed point
    bias: Tensor       # (c_out,) int64, ACT_BITS fixed point
    exp: Tensor        # the exp table E, shared by the sites of a model

    @classmethod
    def from_float(cls, m: DictionaryAttention, dictionary: Tensor, exp: Tensor,
                   where: str = "dictionary attention") -> "IntegerDictionaryAttention":
        """Quantize one site at export, checking that its sums stay exact."""
        with torch.no_grad():
            k, v, b = (t.detach().double() for t in m.tables(dictionary.detach().float()))
        shift = min(24, W_LIMIT.bit_length() - 1 - math.ceil(math.log2(k.abs().max().item() + 1e-30)))
        if ACT_BITS + shift - LOGIT_BITS < 1:
            raise ValueError(f"{where}: keys of magnitude {k.abs().max().item():.3g} are too large")
        kq = torch.round(k * 2.0**shift).clamp(-W_LIMIT, W_LIMIT).to(torch.int64)
        vq = torch.round(v * 2.0**ACT_BITS).clamp(-ACT_CLIP, ACT_CLIP).to(torch.int64)
        bq = torch.round(b * 2.0**ACT_BITS).to(torch.int64)
        dk, n = kq.shape[-1], kq.shape[1]
        for what, bound in (("logit", dk * ACT_CLIP * W_LIMIT), ("weighted sum", n * (1 << EXP_BITS) * ACT_CLIP)):
            if bound >= EXACT_LIMIT:
                raise ValueError(f"{where}: {what} bound 2^{math.log2(bound):.1f} is not exact in float64")
        return cls(IntegerNet.from_float(m.query), kq, shift, vq, bq, exp)

    # ---- the arithmetic -------------------------------------------------------------------
    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # float64 holding integers, for exact BLAS products (bounds checked at export)
        return (self.keys.numpy().astype(np.float64), self.values.numpy().transpose(0, 2, 1).astype(np.float64),
                self.bias.numpy().astype(np.int64), self.exp.numpy().astype(np.int64))

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return self.query.axis_ops()

    def __call__(self, ctx: np.ndarray) -> np.ndarray:
        """(B, c_in, h, w) int64 -> (B, c_out, h, w) int64."""
        q = self.query._exact(ctx)
        B, _, h, w = q.shape
        H = self.keys.shape[0]
        q = q.reshape(B, H, -1, h * w)
        out = np.empty((B, self.values.shape[-1], h * w), np.int64)
        for p in range(0, h * w, CHUNK):
            out[..., p:p + CHUNK] = self._attend(q[..., p:p + CHUNK])
        return out.reshape(B, -1, h, w)

    def _attend(self, q: np.ndarray) -> np.ndarray:
        """(B, H, dk, P) int64 queries -> (B, c_out, P) int64."""
        keys, values_t, bias, exp = self._tables
        r = ACT_BITS + self.key_shift - LOGIT_BITS
        logits = np.matmul(keys[None], q.astype(np.float64)).astype(np.int64)   # (B, H, n, P)
        logits = (logits + (1 << (r - 1))) >> r
        gap = logits.max(axis=2, keepdims=True) - logits
        weights = exp[np.minimum(gap, len(exp) - 1)]
        total = weights.sum(axis=2)[:, :, None]                                  # (B, H, 1, P)
        num = np.matmul(values_t[None], weights.astype(np.float64)).astype(np.int64)  # (B, H, c_out, P)
        out = np.floor_divide(2 * num + total, 2 * total).sum(axis=1) + bias[None, :, None]
        return np.clip(out, -ACT_CLIP, ACT_CLIP)

    # ---- (de)serialization as flat tensors (safetensors) ------------------------------------
    def to_tensors(self, prefix: str) -> dict[str, Tensor]:
        """The site's tensors under ``prefix`` (the shared exp table is its codec's to write)."""
        return {**self.query.to_tensors(f"{prefix}.query"), f"{prefix}.keys": self.keys.to(torch.int32),
                f"{prefix}.key_shift": torch.tensor([self.key_shift], dtype=torch.int64),
                f"{prefix}.values": self.values.to(torch.int32), f"{prefix}.bias": self.bias}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor], prefix: str, exp: Tensor) -> "IntegerDictionaryAttention":
        return cls(IntegerNet.from_tensors(t, f"{prefix}.query"), t[f"{prefix}.keys"].to(torch.int64),
                   int(t[f"{prefix}.key_shift"][0]), t[f"{prefix}.values"].to(torch.int64),
                   t[f"{prefix}.bias"].to(torch.int64), exp)
