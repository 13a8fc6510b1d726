"""Space-channel context: the hyperprior of ``latent.hyperprior`` with y coded in uneven
channel groups, each in two checkerboard passes.

He, Zheng, Sun, Wang, Qin, "Checkerboard context model for efficient learned image
compression", CVPR 2021 (the two spatial passes), and He, Yang, Peng, Ma, Qin, Wang, "ELIC:
Efficient learned image compression with unevenly grouped space-channel contextual adaptive
coding", CVPR 2022 (the uneven channel groups, 16, 16, 32, 64, M-128 for M=320, and both
contexts together).

Anchors are the positions (i, j) of y with i + j even, counted from y's top-left corner on
the whole latent (never a tile's); the others are non-anchors. Per group ``k`` of ``g_k``
channels (``hs`` = the whole hyper-synthesis output, scales and means of all M channels;
``y_hat_<k`` = the groups decoded before; all in the gained domain)::

    ctx_k = concat(hs, ch_k(y_hat_0, ..., y_hat_{k-1}))             (k = 0: hs alone)
    anchors:      (d_s, d_m) = pa_k(ctx_k, 0)
    non-anchors:  (d_s, d_m) = pa_k(ctx_k, sp_k(y_hat_k on the anchors, zero elsewhere))
    scales = hs_scales_k + d_s     means = hs_means_k + d_m
    y_sym = round(y_g - means)     y_hat = y_sym + means

``ch_k`` is ELIC's channel context (5x5 convolutions), ``sp_k`` the checkerboard context (one
5x5 convolution that reads only taps at an odd offset: from a non-anchor, exactly the
anchors around it), ``pa_k`` the parameter aggregation (1x1 convolutions, so a position's
parameters read its own context only). A group's anchors are coded first, then its
non-anchors, then the next group: 2 x groups steps in the stream after z.

Training runs each group's two passes in one forward, as the papers do: the anchors'
spatial context is zero, the non-anchors' context sees the anchors' rounded values
(straight-through), so the rate estimate is the coded one.

Departures from the papers, all for the exact decoder or for warm starts:

* ``ch_k``, ``sp_k`` and ``pa_k`` are conv/ReLU stacks exported as integer networks
  (``nn.integer``) and see only integers (the fixed-point hyper output and ``y_hat``), so the
  decoder rebuilds the coder's parameters bit-exactly on any machine.
* ``pa_k`` predicts a residual correction to the hyperprior's parameters for its channels,
  and its last layer starts at zero: an untrained codec is exactly the mean-scale
  hyperprior, so training can start from a shipped ``msh`` or ``charm`` model.
* ``ch_k``'s hidden layers have one width (ELIC ramps the widths from input to output).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter
from liccodec.latent.channelwise import _fixed
from liccodec.latent.hyperprior import ExactParams, GainedHyperprior, _quantize_y
from liccodec.nn import conv, correction_net
from liccodec.nn.integer import ACT_BITS, IntegerNet, IntLayer
from liccodec.tiling import Geometry, run_tiled

#: ELIC's group sizes for M = 320 are 16, 16, 32, 64, M - 128; this is the same ramp for M = 192
DEFAULT_GROUPS = (16, 16, 32, 64, 64)


def anchor_mask(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """(h, w) bool, True at the anchors: positions (i, j) of the whole latent with i + j even."""
    i = torch.arange(h, device=device).view(-1, 1)
    j = torch.arange(w, device=device).view(1, -1)
    return (i + j) % 2 == 0


class CheckerboardConv2d(nn.Conv2d):
    """A k x k convolution (stride 1, same padding) that reads only the taps at an odd
    offset (di + dj odd). On the checkerboard, that is from any position exactly the
    positions of the other colour: a non-anchor reads anchors only. The masked weights stay
    parameters (their gradient is zero) and export as zeros."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5):
        if kernel % 2 == 0:
            raise ValueError("a checkerboard convolution needs an odd kernel")
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        d = torch.arange(kernel) - kernel // 2
        self.register_buffer("mask", ((d.view(-1, 1) + d.view(1, -1)) % 2 != 0).float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask.to(self.weight.dtype), self.bias, self.stride, self.padding)

    def to_integer(self, relu: bool) -> list[IntLayer]:
        """The masked layer as an integer layer (``IntegerNet.from_float`` calls this)."""
        plain = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, padding=self.padding)
        with torch.no_grad():
            plain.weight.copy_(self.weight * self.mask)
            plain.bias.copy_(self.bias)
        return [IntLayer.from_float(plain, relu, "checkerboard convolution")]


def _channel_net(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """ELIC's channel context: three 5x5 convolutions with ReLUs."""
    return nn.Sequential(
        conv(c_in, hidden, 5, 1), nn.ReLU(inplace=True),
        conv(hidden, hidden, 5, 1), nn.ReLU(inplace=True),
        conv(hidden, c_out, 5, 1),
    )


def _scatter(anchors: Tensor, others: Tensor, mask: Tensor) -> Tensor:
    """(B, C, n_a) and (B, C, n_o) values -> (B, C, h, w) with the first on ``mask``."""
    out = anchors.new_empty(*anchors.shape[:2], *mask.shape)
    out[..., mask] = anchors
    out[..., ~mask] = others.to(anchors.dtype)
    return out


def _pointwise(net: Callable[[Tensor], Tensor], x: Tensor, tile: int | None) -> Tensor:
    """A 1x1 network on gathered positions (B, C, n) -> (B, C', n); with ``tile``, in chunks
    of tile x tile positions (bounded memory; the same integers)."""
    step = x.shape[-1] if tile is None else max(1, tile * tile)
    parts = [net(x[..., i:i + step].unsqueeze(-1)).squeeze(-1) for i in range(0, x.shape[-1], step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def _tiled(net: Callable[[Tensor], Tensor], x: Tensor, tile: int | None) -> Tensor:
    return net(x) if tile is None else run_tiled(net, x, Geometry.of(net), tile)


@dataclass
class CheckerboardExact(ExactParams):
    """The hyperprior's exact state plus the integer context networks of every group."""

    ch: dict[int, IntegerNet]      # group k >= 1: channel context
    sp: tuple[IntegerNet, ...]     # group k: checkerboard context
    pa: tuple[IntegerNet, ...]     # group k: parameter aggregation

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        def nets(name: str, first: int) -> list[IntegerNet]:
            out = []
            while f"exact.{name}.{first + len(out)}.0.weight" in t:
                out.append(IntegerNet.from_tensors(t, f"exact.{name}.{first + len(out)}"))
            return out
        return {**super().fields_from(t), "ch": dict(enumerate(nets("ch", 1), start=1)),
                "sp": tuple(nets("sp", 0)), "pa": tuple(nets("pa", 0))}

    def to_tensors(self) -> dict[str, Tensor]:
        out = super().to_tensors()
        for k, net in self.ch.items():
            out.update(net.to_tensors(f"exact.ch.{k}"))
        for name, nets in (("sp", self.sp), ("pa", self.pa)):
            for k, net in enumerate(nets):
                out.update(net.to_tensors(f"exact.{name}.{k}"))
        return out


class CheckerboardChannel(GainedHyperprior):
    """:class:`GainedHyperprior` with y in uneven channel groups, each coded anchors first,
    non-anchors second (see the module docstring)."""

    exact_cls = CheckerboardExact

    def __init__(self, N: int, M: int, levels: int, groups: tuple[int, ...] = DEFAULT_GROUPS,
                 context_hidden: int = 64, aggregation_hidden: int = 192,
                 init_log_gain: Tensor | None = None, inference: bool = False):
        groups = tuple(int(g) for g in groups)
        if not groups or min(groups) < 1 or sum(groups) != M:
            raise ValueError(f"channel groups {groups} do not split M={M}")
        self.groups, self.context_hidden, self.aggregation_hidden = groups, context_hidden, aggregation_hidden
        starts = [sum(groups[:k]) for k in range(len(groups))]
        self.bounds = [(s, s + g) for s, g in zip(starts, groups)]
        super().__init__(N, M, levels, init_log_gain, inference)

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        g, ch_out = self.groups, lambda k: 2 * self.groups[k]
        self.ch = nn.ModuleDict({str(k): _channel_net(sum(g[:k]), self.context_hidden, ch_out(k))
                                 for k in range(1, len(g))})
        self.sp = nn.ModuleList(nn.Sequential(CheckerboardConv2d(gk, 2 * gk)) for gk in g)
        self.pa = nn.ModuleList(
            correction_net(2 * M + (ch_out(k) if k else 0) + 2 * gk, self.aggregation_hidden, 2 * gk, kernel=1)
            for k, gk in enumerate(g))

    training_only = (*GainedHyperprior.training_only, "ch.", "sp.", "pa.")

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), **{f"ch.{k}": net for k, net in self.ch.items()},
                **{f"sp.{k}": net for k, net in enumerate(self.sp)},
                **{f"pa.{k}": net for k, net in enumerate(self.pa)}}

    # ---- training ------------------------------------------------------------------------
    def _y_forward(self, y_g: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        """Both passes of every group in one forward: (likelihoods, y_hat), gained domain."""
        h, w = y_g.shape[-2:]
        a = anchor_mask(h, w, y_g.device)
        hs = torch.cat([scales, means], dim=1)
        liks, y_hats = [], []
        for k, (c0, c1) in enumerate(self.bounds):
            ctx = hs if k == 0 else torch.cat([hs, self.ch[str(k)](torch.cat(y_hats, dim=1)).to(hs.dtype)], dim=1)
            y, s, m = y_g[:, c0:c1], scales[:, c0:c1], means[:, c0:c1]
            zero = ctx.new_zeros(ctx.shape[0], 2 * (c1 - c0), int(a.sum()))
            lik_a, y_hat_a = self._pass(k, ctx[..., a], zero, y[..., a], s[..., a], m[..., a])
            anchors = y_hat_a.new_zeros(*y.shape)
            anchors[..., a] = y_hat_a
            sp = self.sp[k](anchors)
            lik_n, y_hat_n = self._pass(k, ctx[..., ~a], sp[..., ~a], y[..., ~a], s[..., ~a], m[..., ~a])
            liks.append(_scatter(lik_a, lik_n, a))
            y_hats.append(_scatter(y_hat_a, y_hat_n, a))
        return torch.cat(liks, dim=1), torch.cat(y_hats, dim=1)

    def _pass(self, k: int, ctx: Tensor, sp: Tensor, y: Tensor, s: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
        """One pass over gathered positions (B, C, n): (likelihoods, y_hat) in fp32."""
        d_s, d_m = _pointwise(self.pa[k], torch.cat([ctx, sp.to(ctx.dtype)], dim=1), None).chunk(2, dim=1)
        with torch.autocast(y.device.type, enabled=False):
            # add in fp32: under bf16 autocast a bf16 sum would round the means again
            return _quantize_y(y.float(), s.float() + d_s.float(), m.float() + d_m.float(), self.training)

    # ---- exact coding --------------------------------------------------------------------
    def _code_groups(self, ex: CheckerboardExact, scales_q: Tensor, means_q: Tensor, tile: int | None,
                     code: Callable[[int, Tensor, Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """Run the groups in order, anchors then non-anchors; ``code(k, where, index, means_q)``
        encodes or decodes the positions ``where`` of group k (index and means gathered,
        (1, g_k, n)) and returns their symbols. Returns (y symbols, means in ACT_BITS fixed
        point), the same on both sides: each pass reads only what was decoded before it."""
        self._check(ex)
        h, w = scales_q.shape[-2:]
        a = anchor_mask(h, w)
        hs = torch.cat([scales_q, means_q], dim=1)
        syms, mq, y_hat_q = [], [], []
        for k, (c0, c1) in enumerate(self.bounds):
            ctx = hs if k == 0 else torch.cat([hs, _tiled(ex.ch[k], torch.cat(y_hat_q, dim=1), tile)], dim=1)
            s, m = scales_q[:, c0:c1], means_q[:, c0:c1]
            zero = torch.zeros(1, 2 * (c1 - c0), int(a.sum()), dtype=torch.int64)
            ya, ma = self._code_pass(ex, k, a, ctx[..., a], zero, s[..., a], m[..., a], tile, code)
            anchors = torch.zeros(1, c1 - c0, h, w, dtype=torch.int64)
            anchors[..., a] = _fixed(ya, ma)
            sp = _tiled(ex.sp[k], anchors, tile)
            yn, mn = self._code_pass(ex, k, ~a, ctx[..., ~a], sp[..., ~a], s[..., ~a], m[..., ~a], tile, code)
            syms.append(_scatter(ya, yn, a))
            mq.append(_scatter(ma, mn, a))
            y_hat_q.append(_fixed(syms[-1], mq[-1]))
        return torch.cat(syms, dim=1), torch.cat(mq, dim=1)

    @staticmethod
    def _code_pass(ex: CheckerboardExact, k: int, where: Tensor, ctx: Tensor, sp: Tensor, s: Tensor, m: Tensor,
                   tile: int | None, code: Callable[[int, Tensor, Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        d_s, d_m = _pointwise(ex.pa[k], torch.cat([ctx, sp], dim=1), tile).chunk(2, dim=1)
        return code(k, where, ex.index(s + d_s), m + d_m), m + d_m

    def _check(self, ex: CheckerboardExact) -> None:
        shapes = ([net.layers[-1].weight.shape[0] for net in ex.pa], [net.layers[-1].weight.shape[0] for net in ex.sp],
                  sorted(ex.ch))
        want = ([2 * g for g in self.groups], [2 * g for g in self.groups], list(range(1, len(self.groups))))
        if shapes != want:
            raise ValueError(f"the weights' context networks do not fit the channel groups {self.groups}")

    def _encode_y(self, ex: CheckerboardExact, y_g: Tensor, scales_q: Tensor, means_q: Tensor,
                  writer: StreamWriter, tile: int | None) -> tuple[Tensor, Tensor]:
        def encode(k: int, where: Tensor, index: Tensor, m: Tensor) -> Tensor:
            c0, c1 = self.bounds[k]
            y_sym = torch.round(y_g[:, c0:c1][..., where] - m.double() / 2**ACT_BITS).to(torch.int64)
            writer.add(ex.y_tables, y_sym.numpy(), index.numpy())
            return y_sym
        return self._code_groups(ex, scales_q, means_q, tile, encode)

    def _decode_y(self, ex: CheckerboardExact, reader: StreamReader, scales_q: Tensor, means_q: Tensor,
                  tile: int | None) -> tuple[Tensor, Tensor]:
        def decode(k: int, where: Tensor, index: Tensor, m: Tensor) -> Tensor:
            return torch.from_numpy(reader.take(ex.y_tables, index.numpy())).view_as(index)
        return self._code_groups(ex, scales_q, means_q, tile, decode)
