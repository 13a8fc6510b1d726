"""ACGC entropy model: charm's channel slices, each coded in two checkerboard passes whose
parameter networks also read an adaptive channel-wise attention context and a global-inter
(inter-slice spatial) attention context, all exact integer arithmetic.

Wang, Fu, Cao, Wang, Chen, Liang, "S2LIC: Learned Image Compression with the SwinV2 Block,
Adaptive Channel-wise and Global-inter Attention Context", arXiv 2403.14471, 2024 (the ACGC
entropy model: slices, a parallel checkerboard inside each, an adaptive channel-wise context
over the decoded slices and a global-inter attention context across slices).

Per slice ``i`` of ``c = M / slices`` channels (``s1, m1`` = charm's parameters of the slice,
its hyperprior plus its slice network's correction; ``y_hat_<i`` = the decoded slices), for
``i >= 1``::

    q_ch = q_ch_i(s1, m1)                          per position, dim channels (1x1 integer net)
    ACC  = sum_j softmax_j(q_ch . k_ch_i(y_hat_j)) y_hat_j          over the slices j < i
    q_sp = q_sp_i(s1, m1)
    AGC  = sum_o softmax_o(q_sp . k_sp_i(y_hat_{i-1})[p+o]) y_hat_{i-1}[p+o]
                                                   over the window offsets o (window x window)
    ctx  = concat(s1, m1, ACC, AGC)                (slice 0: concat(s1, m1))
    anchors:      (d_s, d_m) = pa_a_i(ctx)
    non-anchors:  (d_s, d_m) = pa_n_i(ctx, sp_i(y_hat_i on the anchors))
    scales = s1 + d_s     means = m1 + d_m

``ACC`` weighs, at every position, which earlier slice to read (the channel-wise context of
the paper made adaptive per position); ``AGC`` is an attention of the slice's parameters over
the previous slice's decoded latent in a window around the position (the paper's global-inter
context, restricted to a window; see below). Both depend on decoded slices only, so each is
computed once per slice and read by both passes.

Exactness. The query and key networks are integer networks (``nn.integer``) on the same
ACT_BITS fixed-point inputs as the slice networks; the attention itself is integer
(:func:`int_attend`): logits ``sum_d q_d k_d`` (int64; ``|q|, |k| <= ACT_CLIP`` so at most
``dim * 2^44``) rounded to 2^-8 nat, weights from the stored exp table of ``nn.dictionary``
(``E[max - l]``), and the weighted sum of the values divided by the sum of the weights with
exact integer rounding. No float touches anything the coder reads, and each position reads
only its window, so tiles give the whole image's integers. Training runs the float softmax of
the same quantities.

Warm start. The parameter networks' last layers start at zero (``nn.correction_net``), so a
model built on charm is charm bit for bit at step 0, in training's forward and in the
exported integer path, while the attention already computes.

Departures from the paper, for exactness, tiling and a 2-core CPU:

* the channel-wise attention attends over slices per position (a softmax over ``i`` tokens),
  not over all channels with an image-wide ``C x C`` map: a global map would make every
  position depend on the whole image (no tiling) and needs a global pooling in integers;
* the global-inter attention is windowed (``window`` x ``window``, 5 by default), not over
  the whole latent, and has no deformable offsets: deformable sampling is bilinear in float,
  and an integer version would need integer offsets learned through a float relaxation;
* queries, keys and values are 1x1 projections without layer norms, GELU or output
  projection (what follows the attention is the integer parameter network's first layer);
* the checkerboard spatial context and the two parameter networks per pass are those of
  ``latent.slicecheckerboard`` (arch ``deform``), with zero-channel skipping off by default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.latent.checkerboard import _tiled
from liccodec.latent.slicecheckerboard import SliceCheckerboard, SliceCheckerboardExact
from liccodec.nn import conv, correction_net
from liccodec.nn.dictionary import exp_table
from liccodec.fixedpoint import LOGIT_BITS
from liccodec.nn.integer import ACT_BITS, ACT_CLIP, IntegerNet

#: the rounding shift from a product of two ACT_BITS numbers to logits in 2^-LOGIT_BITS
LOGIT_SHIFT = 2 * ACT_BITS - LOGIT_BITS
#: the most key channels whose logit sum stays inside int64 (dim * ACT_CLIP^2 < 2^62)
MAX_DIM = 1 << (62 - 2 * ACT_CLIP.bit_length())


def windows(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(B, C, h, w) -> ((B, C, h, w, k*k) the k x k neighbourhood of every position, zero
    outside the map; (h, w, k*k) bool, True where the neighbour is inside the map)."""
    r = k // 2
    h, w = x.shape[-2:]
    pad = torch.nn.functional.pad(x, (r, r, r, r))
    inside = torch.zeros(h + 2 * r, w + 2 * r, dtype=torch.bool, device=x.device)
    inside[r:r + h, r:r + w] = True
    offs = [(dy, dx) for dy in range(k) for dx in range(k)]
    vals = torch.stack([pad[..., dy:dy + h, dx:dx + w] for dy, dx in offs], dim=-1)
    valid = torch.stack([inside[dy:dy + h, dx:dx + w] for dy, dx in offs], dim=-1)
    return vals, valid


def float_attend(q: Tensor, k: Tensor, v: Tensor, valid: Tensor | None) -> Tensor:
    """Training: q (B, d, h, w), keys (B, d, h, w, T), values (B, c, h, w, T) -> (B, c, h, w),
    softmax over the valid tokens, fp32."""
    with torch.autocast(q.device.type, enabled=False):
        logits = (q.float().unsqueeze(-1) * k.float()).sum(dim=1)
        if valid is not None:
            logits = logits.masked_fill(~valid, float("-inf"))
        p = logits.softmax(dim=-1)
        return (p.unsqueeze(1) * v.float()).sum(dim=-1)


def int_attend(q: Tensor, k: Tensor, v: Tensor, valid: Tensor | None, exp: Tensor) -> Tensor:
    """The exact attention: int64 in ACT_BITS fixed point, shapes as :func:`float_attend`.
    Every sum is of int64 integers well inside its range, so order does not matter."""
    clip = lambda t: t.to(torch.int64).clamp(-ACT_CLIP, ACT_CLIP)  # noqa: E731
    q, k, v = clip(q), clip(k), clip(v)
    logits = (q.unsqueeze(-1) * k).sum(dim=1)
    logits = (logits + (1 << (LOGIT_SHIFT - 1))) >> LOGIT_SHIFT                  # 2^-8 nat
    if valid is not None:
        logits = logits.masked_fill(~valid, torch.iinfo(torch.int64).min >> 2)
    gap = (logits.max(dim=-1, keepdim=True).values - logits).clamp(max=len(exp) - 1)
    wts = exp.to(torch.int64)[gap]
    if valid is not None:
        wts = wts.masked_fill(~valid, 0)
    total = wts.sum(dim=-1)                          # >= E[0] = 2^16: the largest weight is E[0]
    num = (wts.unsqueeze(1) * v).sum(dim=-1)
    out = torch.div(2 * num + total.unsqueeze(1), 2 * total.unsqueeze(1), rounding_mode="floor")
    return out.clamp(-ACT_CLIP, ACT_CLIP)


def acgc_context(ctx: Tensor, c: int, i: int, window: int, nets: dict[str, Callable[[Tensor], Tensor]],
                 attend: Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]) -> Tensor:
    """``concat(s1, m1, y_hat_0 .. y_hat_{i-1})`` -> ``concat(ACC, AGC)`` (B, 2c, h, w), with the
    float modules or the integer networks ``nets`` (q_ch, k_ch, q_sp, k_sp) and their attention."""
    b, h, w = ctx.shape[0], *ctx.shape[-2:]
    sm = ctx[:, :2 * c]
    toks = ctx[:, 2 * c:2 * c + i * c]
    # the slices as tokens: keys by one shared network, run on the slices stacked in the batch
    stacked = toks.reshape(b, i, c, h, w).transpose(0, 1).reshape(i * b, c, h, w)
    keys = nets["k_ch"](stacked)
    keys = keys.reshape(i, b, -1, h, w).permute(1, 2, 3, 4, 0)
    vals = toks.reshape(b, i, c, h, w).permute(0, 2, 3, 4, 1)
    acc = attend(nets["q_ch"](sm), keys, vals, None)
    last = toks[:, (i - 1) * c:]
    k_win, valid = windows(nets["k_sp"](last), window)
    v_win, _ = windows(last, window)
    agc = attend(nets["q_sp"](sm), k_win, v_win, valid)
    return torch.cat([acc.to(ctx.dtype), agc.to(ctx.dtype)], dim=1)


class ACGCSite(nn.Module):
    """Slice ``i``'s two attention contexts, float (training). Its four networks export as
    integer networks (``ACGCChannel.integer_nets``)."""

    def __init__(self, c: int, i: int, dim: int, hidden: int, window: int):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"acgc_window must be odd and positive, got {window}")
        if dim > MAX_DIM:
            raise ValueError(f"acgc_dim {dim} exceeds {MAX_DIM}: its logits would leave int64")
        self.c, self.i, self.window = c, i, window
        self.q_ch = nn.Sequential(conv(2 * c, hidden, 1, 1), nn.ReLU(inplace=True), conv(hidden, dim, 1, 1))
        self.k_ch = nn.Sequential(conv(c, dim, 1, 1))
        self.q_sp = nn.Sequential(conv(2 * c, hidden, 1, 1), nn.ReLU(inplace=True), conv(hidden, dim, 1, 1))
        self.k_sp = nn.Sequential(conv(c, dim, 1, 1))

    def nets(self) -> dict[str, nn.Sequential]:
        return {"q_ch": self.q_ch, "k_ch": self.k_ch, "q_sp": self.q_sp, "k_sp": self.k_sp}

    def forward(self, ctx: Tensor) -> Tensor:
        return acgc_context(ctx, self.c, self.i, self.window, self.nets(), float_attend)


class ACGCStep:
    """Slice ``i``'s exact attention contexts: int64 ``concat(s1, m1, y_hat_<i)`` ->
    int64 ``concat(ACC, AGC)``, with the receptive field of its window (``liccodec.tiling``)."""

    def __init__(self, c: int, i: int, window: int, nets: dict[str, IntegerNet], exp: Tensor):
        self.c, self.i, self.window, self.nets, self.exp = c, i, window, nets, exp

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [(False, self.window, 1, self.window // 2)]

    def __call__(self, ctx: Tensor) -> Tensor:
        return acgc_context(ctx.to(torch.int64), self.c, self.i, self.window, self.nets,
                            lambda q, k, v, valid: int_attend(q, k, v, valid, self.exp))


NET_NAMES = ("q_ch", "k_ch", "q_sp", "k_sp")


@dataclass
class ACGCExact(SliceCheckerboardExact):
    """The slice checkerboard's exact state plus every slice's integer query and key
    networks, the window, and the exp table."""

    acgc: dict[int, dict[str, IntegerNet]]
    acgc_window: int
    acgc_exp: Tensor | None

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        acgc, i = {}, 1
        while f"exact.acgc.{i}.q_ch.0.weight" in t:
            acgc[i] = {n: IntegerNet.from_tensors(t, f"exact.acgc.{i}.{n}") for n in NET_NAMES}
            i += 1
        window = int(t["exact.acgc_window"][0]) if "exact.acgc_window" in t else 0
        exp = t["exact.acgc_exp"].to(torch.int64) if "exact.acgc_exp" in t else None
        return {**super().fields_from(t), "acgc": acgc, "acgc_window": window, "acgc_exp": exp}

    def to_tensors(self) -> dict[str, Tensor]:
        out = super().to_tensors()
        for i, nets in self.acgc.items():
            for n, net in nets.items():
                out.update(net.to_tensors(f"exact.acgc.{i}.{n}"))
        if self.acgc_exp is not None:
            out["exact.acgc_exp"] = self.acgc_exp.to(torch.int32)
            out["exact.acgc_window"] = torch.tensor([self.acgc_window], dtype=torch.int64)
        return out


class ACGCChannel(SliceCheckerboard):
    """:class:`SliceCheckerboard` whose parameter networks also read the adaptive channel-wise
    and global-inter attention contexts of the slices decoded before (module docstring)."""

    exact_cls = ACGCExact

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, lrp: bool = False,
                 pa_hidden: int = 64, skip_zero: bool = False, acgc_dim: int = 16, acgc_hidden: int = 32,
                 acgc_window: int = 5):
        # set before the hyperprior builds the training parts, which reads them
        self.acgc_dim, self.acgc_hidden, self.acgc_window = acgc_dim, acgc_hidden, acgc_window
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference, lrp, pa_hidden, skip_zero)

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        c = M // self.slices
        extra = lambda i: 2 * c if i else 0  # noqa: E731
        self.pa_a = nn.ModuleList(correction_net(2 * c + extra(i), self.pa_hidden, 2 * c, kernel=1)
                                  for i in range(self.slices))
        self.pa_n = nn.ModuleList(correction_net(4 * c + extra(i), self.pa_hidden, 2 * c, kernel=1)
                                  for i in range(self.slices))
        self.acgc = nn.ModuleDict({str(i): ACGCSite(c, i, self.acgc_dim, self.acgc_hidden, self.acgc_window)
                                   for i in range(1, self.slices)})

    training_only = (*SliceCheckerboard.training_only, "acgc.")

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(),
                **{f"acgc.{i}.{n}": net for i, site in self.acgc.items() for n, net in site.nets().items()}}

    def export_exact(self, scales: np.ndarray | None = None) -> dict[str, Tensor]:
        return {**super().export_exact(scales), "exact.acgc_exp": torch.from_numpy(exp_table()).to(torch.int32),
                "exact.acgc_window": torch.tensor([self.acgc_window], dtype=torch.int64)}

    # ---- training ------------------------------------------------------------------------
    def _slice_context(self, i: int, ctx: Tensor, y_hats: list[Tensor]) -> Tensor:
        """From slice 1 on, the ACGC site's channels follow the (scales, means) context."""
        if not i:
            return ctx
        return torch.cat([ctx, self.acgc[str(i)](torch.cat([ctx, *y_hats], dim=1)).float()], dim=1)

    # ---- exact coding --------------------------------------------------------------------
    def _check(self, ex: ACGCExact) -> None:
        super()._check(ex)
        if sorted(ex.acgc) != list(range(1, self.slices)) or ex.acgc_exp is None or ex.acgc_window != self.acgc_window:
            raise ValueError(f"the weights' attention contexts do not fit {self.slices} slices "
                             f"and a window of {self.acgc_window}")

    def _exact_slice_context(self, ex: ACGCExact, i: int, ctx: Tensor, y_hat_q: list[Tensor],
                             tile: int | None) -> Tensor:
        """The exact attention contexts (integer steps) after the fixed-point (scales, means)."""
        if not i:
            return ctx
        step = ACGCStep(self.M // self.slices, i, ex.acgc_window, ex.acgc[i], ex.acgc_exp)
        return torch.cat([ctx, _tiled(step, torch.cat([ctx, *y_hat_q], dim=1), tile)], dim=1)

