"""charm's channel slices, each coded in two checkerboard passes with a parameter network of
its own per pass, and all-zero channels skipped: the entropy model of arch ``deform``.

Fu, Liang, Liang, Wang, Fang, Zhang, Han, "Fast and high-performance learned image
compression with improved checkerboard context model, deformable residual module, and
knowledge distillation", IEEE TIP 2024 (arXiv 2309.02529): an "improved" checkerboard
context (He et al., CVPR 2021) whose anchors and non-anchors get their Gaussian parameters
from two separate parameter networks, and a latent made sparse by an L1 penalty whose
all-zero channels are not coded.

Per slice ``i`` of ``c = M / slices`` channels (``s_i, m_i`` = the hyper-synthesis output of
its channels, ``y_hat_<i`` = the slices decoded before it, gained domain; ``a`` = anchors,
positions (i, j) of the whole latent with i + j even; ``n`` = the others)::

    (s', m')  = (s_i, m_i) + cc_i(s_i, m_i, y_hat_<i)                 (charm's slice network)
    anchors:      (d_s, d_m) = pa_a_i(s', m')                           1x1, own network
    non-anchors:  (d_s, d_m) = pa_n_i(s', m', sp_i(y_hat_i on a, 0 on n))   1x1, own network
    scales = s' + d_s        means = m' + d_m

``sp_i`` is one 5x5 convolution that reads only the other colour of the checkerboard
(``latent.checkerboard.CheckerboardConv2d``). After z the ``ans`` stream holds the
zero-channel flags, then per slice its anchors, then its non-anchors (docs/models/deform.md,
"Stream layout").

**Zero channels.** The encoder flags every channel of y whose symbols are all zero in this
image (one binary symbol per channel, coded with the table of the file's nearest trained
level and that channel: ``zero_freq``, how often training found it all zero) and leaves its
symbols out; the decoder reads the flags first and sets those channels to zero without
decoding them. Nothing else changes: a skipped channel's symbols are zero on both sides, so
its means, and every later slice's parameters, are the ones a full decoding computes.

Departures from the paper, all for the exact decoder or for warm starts:

* every network that sets the coder's parameters is an integer network (``nn.integer``);
* the checkerboard runs inside charm's channel slices (the paper's model has a spatial
  checkerboard and no channel context), and ``pa_a``/``pa_n`` predict residual corrections
  whose last layers start at zero: warm-started from a shipped ``charm`` model, an
  untrained ``deform`` latent gives charm's parameters, likelihoods and y_hat exactly;
* one Gaussian for both passes (the paper gives the two passes different probability models);
* the flags cost a few bytes (about one bit a channel until ``zero_freq`` has learned).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter, TableSet
from liccodec.errors import FormatError
from liccodec.fixedpoint import Q_UNIT
from liccodec.latent.channelwise import ChannelConditional, ChannelExact, _fixed
from liccodec.latent.checkerboard import CheckerboardConv2d, _pointwise, _scatter, _tiled, anchor_mask
from liccodec.latent.hyperprior import LatentOut, _quantize_y
from liccodec.nn import correction_net
from liccodec.nn.integer import ACT_BITS, IntegerNet

#: the flag tables' probabilities stay inside [FLAG_MIN, 1 - FLAG_MIN]: a flag never costs
#: more than 6 bits, and a channel seen all zero in every training image still codes
FLAG_MIN = 1.0 / 64
#: the escape category of a flag table (a flag is 0 or 1; an escape is a format error)
FLAG_ESCAPE = 2.0**-20
#: the update rate of ``zero_freq`` per training image
ZERO_FREQ_RATE = 0.01


def nearest_level(q_milli: int, levels: int) -> int:
    """The trained level nearest to a quality in thousandths (ties upwards), in integers."""
    return min(max((q_milli - Q_UNIT + Q_UNIT // 2) // Q_UNIT, 0), levels - 1)


def flag_tables(zero_freq: Tensor) -> dict[str, Tensor]:
    """The flag tables (row ``level * M + channel``: [P(coded), P(all zero), escape]) from
    the (levels, M) frequencies with which training found a channel all zero."""
    p = zero_freq.detach().double().clamp(FLAG_MIN, 1 - FLAG_MIN).reshape(-1)
    pmf = torch.stack([1 - p, p, torch.full_like(p, FLAG_ESCAPE)], dim=1).float()
    n = pmf.shape[0]
    return {"exact.zero_flags.pmf": pmf, "exact.zero_flags.length": torch.full((n,), 2, dtype=torch.int32),
            "exact.zero_flags.offset": torch.zeros(n, dtype=torch.int32)}


@dataclass
class SliceCheckerboardExact(ChannelExact):
    """charm's exact state plus, per slice, the checkerboard context and the two parameter
    networks, and the zero-channel flag tables."""

    sp: tuple[IntegerNet, ...]
    pa_a: tuple[IntegerNet, ...]
    pa_n: tuple[IntegerNet, ...]
    zero_flags: TableSet | None

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        def nets(name: str) -> tuple[IntegerNet, ...]:
            out = []
            while f"exact.{name}.{len(out)}.0.weight" in t:
                out.append(IntegerNet.from_tensors(t, f"exact.{name}.{len(out)}"))
            return tuple(out)
        flags = None
        if "exact.zero_flags.pmf" in t:
            flags = TableSet(t["exact.zero_flags.pmf"].numpy(), t["exact.zero_flags.length"].numpy(),
                             t["exact.zero_flags.offset"].numpy())
        return {**super().fields_from(t), "sp": nets("sp"), "pa_a": nets("pa_a"), "pa_n": nets("pa_n"),
                "zero_flags": flags}

    def to_tensors(self) -> dict[str, Tensor]:
        out = super().to_tensors()
        for name, nets in (("sp", self.sp), ("pa_a", self.pa_a), ("pa_n", self.pa_n)):
            for k, net in enumerate(nets):
                out.update(net.to_tensors(f"exact.{name}.{k}"))
        if self.zero_flags is not None:
            tab = self.zero_flags
            out["exact.zero_flags.pmf"] = torch.from_numpy(tab.pmf)
            out["exact.zero_flags.length"] = torch.from_numpy(tab.lengths.astype(np.int32))
            out["exact.zero_flags.offset"] = torch.from_numpy(tab.offsets.astype(np.int32))
        return out


class SliceCheckerboard(ChannelConditional):
    """:class:`ChannelConditional` whose slices are coded anchors first, non-anchors second,
    with a parameter network per pass, and whose all-zero channels are skipped (see the
    module docstring). ``skip_zero`` off: no flags, every channel coded."""

    exact_cls = SliceCheckerboardExact

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, lrp: bool = False,
                 pa_hidden: int = 64, skip_zero: bool = True):
        self.levels, self.pa_hidden, self.skip_zero = levels, pa_hidden, skip_zero
        self._level: Tensor | None = None
        self._q_milli: int | None = None
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference, lrp)

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        c = M // self.slices
        self.sp = nn.ModuleList(nn.Sequential(CheckerboardConv2d(c, 2 * c)) for _ in range(self.slices))
        self.pa_a = nn.ModuleList(correction_net(2 * c, self.pa_hidden, 2 * c, kernel=1) for _ in range(self.slices))
        self.pa_n = nn.ModuleList(correction_net(4 * c, self.pa_hidden, 2 * c, kernel=1) for _ in range(self.slices))
        # how often training found each channel all zero, per trained level: the flag tables
        self.register_buffer("zero_freq", torch.full((self.levels, M), 0.5))

    training_only = (*ChannelConditional.training_only, "sp.", "pa_a.", "pa_n.", "zero_freq")

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), **{f"sp.{i}": net for i, net in enumerate(self.sp)},
                **{f"pa_a.{i}": net for i, net in enumerate(self.pa_a)},
                **{f"pa_n.{i}": net for i, net in enumerate(self.pa_n)}}

    def level_tables(self) -> tuple[str, ...]:
        own = ("zero_freq",) if self.has_training_parts else ()
        return (*super().level_tables(), *own)

    def export_exact(self, scales: np.ndarray | None = None) -> dict[str, Tensor]:
        return {**super().export_exact(scales), **flag_tables(self.zero_freq)}

    # ---- training ------------------------------------------------------------------------
    def forward(self, y: Tensor, level: Tensor) -> LatentOut:
        self._level = level
        try:
            return super().forward(y, level)
        finally:
            self._level = None

    def _y_forward(self, y_g: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        h, w = y_g.shape[-2:]
        a = anchor_mask(h, w, y_g.device)
        liks, y_hats, final_means = [], [], []
        for i in range(self.slices):
            s, m = self._part(scales, i), self._part(means, i)
            d_s, d_m = self._correct(i, torch.cat([s, m, *y_hats], dim=1)).chunk(2, dim=1)
            with torch.autocast(y_g.device.type, enabled=False):
                # charm's parameters, added in fp32 as charm adds them
                s1, m1 = s.float() + d_s.float(), m.float() + d_m.float()
            y = self._part(y_g, i)
            ctx = self._slice_context(i, torch.cat([s1, m1], dim=1), y_hats)
            (lik_a, y_hat_a), m_a = self._pass(self.pa_a[i], ctx[..., a], None, y[..., a], s1[..., a], m1[..., a])
            anchors = y_hat_a.new_zeros(*y.shape)
            anchors[..., a] = y_hat_a
            sp = self.sp[i](anchors)
            (lik_n, y_hat_n), m_n = self._pass(self.pa_n[i], ctx[..., ~a], sp[..., ~a], y[..., ~a],
                                               s1[..., ~a], m1[..., ~a])
            liks.append(_scatter(lik_a, lik_n, a))
            y_hats.append(_scatter(y_hat_a, y_hat_n, a))
            final_means.append(_scatter(m_a, m_n, a))
        lik = torch.cat(liks, dim=1)
        if self.skip_zero and self._level is not None:
            zero = self._zero_channels(y_g, torch.cat(final_means, dim=1))
            if self.training:
                self._count(zero)
            else:
                lik = self._as_coded(lik, zero)
        y_hat = torch.cat(y_hats, dim=1)
        if self.lrp is not None:
            y_hat = self.lrp(torch.cat([*final_means, y_hat], dim=1))
        return lik, y_hat

    def _slice_context(self, i: int, ctx: Tensor, y_hats: list[Tensor]) -> Tensor:
        """Training: what both passes' parameter networks of slice ``i`` read besides the
        checkerboard context: here its corrected (scales, means) ``ctx``; a subclass may
        append channels computed from them and the slices decoded before (``y_hats``)."""
        return ctx

    def _exact_slice_context(self, ex: SliceCheckerboardExact, i: int, ctx: Tensor, y_hat_q: list[Tensor],
                             tile: int | None) -> Tensor:
        """Coding: the integer counterpart of :meth:`_slice_context` (fixed-point ``ctx`` and
        decoded slices ``y_hat_q``), the same on both sides."""
        return ctx

    def _pass(self, net: nn.Module, ctx: Tensor, sp: Tensor | None, y: Tensor, s: Tensor,
              m: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """One pass over gathered positions (B, C, n): ((likelihoods, y_hat), means), fp32."""
        inp = ctx if sp is None else torch.cat([ctx, sp.to(ctx.dtype)], dim=1)
        d_s, d_m = _pointwise(net, inp, None).chunk(2, dim=1)
        with torch.autocast(y.device.type, enabled=False):
            # add in fp32: under bf16 autocast a bf16 sum would round the means again
            mean = m.float() + d_m.float()
            return _quantize_y(y.float(), s.float() + d_s.float(), mean, self.training), mean

    def _rows(self) -> Tensor:
        """Each image's nearest trained level (ties upwards, as :func:`nearest_level`)."""
        return torch.floor(self._level.detach().float() + 0.5).long().clamp(0, self.levels - 1)

    @torch.no_grad()
    def _zero_channels(self, y_g: Tensor, means: Tensor) -> Tensor:
        """(B, M) bool: the channels whose symbols (rounded as coding rounds them) are all zero."""
        return (torch.round(y_g.float() - means.float()) == 0).flatten(2).all(dim=2)

    @torch.no_grad()
    def _count(self, zero: Tensor) -> None:
        """Move ``zero_freq`` of each image's nearest level towards its all-zero channels."""
        for b, row in enumerate(self._rows().tolist()):
            self.zero_freq[row].mul_(1 - ZERO_FREQ_RATE).add_(ZERO_FREQ_RATE * zero[b].float())

    def _as_coded(self, lik: Tensor, zero: Tensor) -> Tensor:
        """The likelihoods of what coding writes (outside training): a skipped channel's
        symbols cost nothing, and each channel's flag costs -log2 of its table's probability,
        folded into the channel's first position."""
        p = self.zero_freq[self._rows()].clamp(FLAG_MIN, 1 - FLAG_MIN)          # (B, M)
        flag = torch.where(zero, p, 1 - p)
        first = torch.zeros_like(lik[:1, :1], dtype=torch.bool)
        first[..., 0, 0] = True
        kept = torch.where(zero[..., None, None], torch.ones_like(lik), lik)
        return torch.where(first, kept * flag[..., None, None].to(lik.dtype), kept)

    def l1(self, y_hat: Tensor) -> Tensor:
        """The paper's sparsity term: the mean absolute value of the decoded latent (per image,
        (B,)), to be weighed into the training loss (docs/models/deform.md)."""
        return y_hat.float().abs().flatten(1).mean(dim=1)

    # ---- exact coding --------------------------------------------------------------------
    def _check(self, ex: SliceCheckerboardExact) -> None:
        n = self.slices
        if len(ex.cc) != n or len(ex.sp) != n or len(ex.pa_a) != n or len(ex.pa_n) != n:
            raise ValueError(f"the weights' slice and context networks do not fit {n} slices")
        if self.skip_zero and (ex.zero_flags is None or len(ex.zero_flags) != self.levels * self.M):
            raise ValueError("the weights carry no zero-channel flag tables for this model")

    def _code_slices(self, ex: SliceCheckerboardExact, scales_q: Tensor, means_q: Tensor, tile: int | None,
                     code: Callable[[int, Tensor, Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """Run the slices in order, anchors then non-anchors; ``code(i, where, index, means_q)``
        encodes or decodes the positions ``where`` of slice i (index and means gathered,
        (1, c, n)) and returns their symbols. Returns (y symbols, means in ACT_BITS fixed
        point), the same on both sides."""
        self._check(ex)
        c = self.M // self.slices
        h, w = scales_q.shape[-2:]
        a = anchor_mask(h, w)
        syms, mq, y_hat_q = [], [], []
        for i in range(self.slices):
            s, m = self._part(scales_q, i), self._part(means_q, i)
            d = _tiled(ex.cc[i], torch.cat([s, m, *y_hat_q], dim=1), tile)
            s1, m1 = s + d[:, :c], m + d[:, c:]
            ctx = self._exact_slice_context(ex, i, torch.cat([s1, m1], dim=1), y_hat_q, tile)
            ya, ma = self._code_pass(ex.pa_a[i], i, a, ctx[..., a], s1[..., a], m1[..., a], tile, code)
            anchors = torch.zeros(1, c, h, w, dtype=torch.int64)
            anchors[..., a] = _fixed(ya, ma)
            sp = _tiled(ex.sp[i], anchors, tile)
            yn, mn = self._code_pass(ex.pa_n[i], i, ~a, torch.cat([ctx[..., ~a], sp[..., ~a]], dim=1),
                                     s1[..., ~a], m1[..., ~a], tile, code)
            syms.append(_scatter(ya, yn, a))
            mq.append(_scatter(ma, mn, a))
            y_hat_q.append(_fixed(syms[-1], mq[-1]))
        return torch.cat(syms, dim=1), torch.cat(mq, dim=1)

    @staticmethod
    def _code_pass(net: IntegerNet, i: int, where: Tensor, ctx: Tensor, s: Tensor, m: Tensor, tile: int | None,
                   code: Callable[[int, Tensor, Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        d_s, d_m = _pointwise(net, ctx, tile).chunk(2, dim=1)
        return code(i, where, s + d_s, m + d_m), m + d_m

    def encode(self, y: Tensor, q_milli: int, writer: StreamWriter, tile: int | None = None,
               qmap: np.ndarray | None = None) -> Tensor:
        self._q_milli = q_milli
        try:
            return super().encode(y, q_milli, writer, tile, qmap)
        finally:
            self._q_milli = None

    def _decode_ints(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
                     tile: int | None) -> tuple[Tensor, Tensor]:
        self._q_milli = q_milli
        try:
            return super()._decode_ints(reader, z_hw, q_milli, tile)
        finally:
            self._q_milli = None

    def _flag_index(self) -> np.ndarray:
        """The flag table of each channel: the row of the file's nearest trained level."""
        if self._q_milli is None:
            raise RuntimeError("zero-channel flags are coded inside encode/decode only")
        return nearest_level(self._q_milli, self.levels) * self.M + np.arange(self.M)

    def _encode_y(self, ex: SliceCheckerboardExact, y_g: Tensor, scales_q: Tensor, means_q: Tensor,
                  writer: StreamWriter, tile: int | None) -> tuple[Tensor, Tensor]:
        """Find every symbol first (skipping changes none of them), then write the flags and
        the steps with the flagged channels left out."""
        steps: list[tuple[int, np.ndarray, np.ndarray]] = []
        c = self.M // self.slices

        def encode(i: int, where: Tensor, scales: Tensor, m: Tensor) -> Tensor:
            y_sym = torch.round(self._part(y_g, i)[..., where] - m.double() / 2**ACT_BITS).to(torch.int64)
            steps.append((i, y_sym.numpy(), ex.index(scales).numpy()))
            return y_sym
        y_sym, mq = self._code_slices(ex, scales_q, means_q, tile, encode)
        zero = np.zeros(self.M, dtype=bool)
        if self.skip_zero:
            zero = ~(y_sym[0].reshape(self.M, -1) != 0).any(dim=1).numpy()
            writer.add(ex.zero_flags, zero.astype(np.int64), self._flag_index())
        for i, sym, index in steps:
            keep = ~zero[i * c:(i + 1) * c]
            if keep.any():
                writer.add(ex.y_tables, sym[:, keep], index[:, keep])
        return y_sym, mq

    def _decode_y(self, ex: SliceCheckerboardExact, reader: StreamReader, scales_q: Tensor, means_q: Tensor,
                  tile: int | None) -> tuple[Tensor, Tensor]:
        c = self.M // self.slices
        self._check(ex)
        zero = np.zeros(self.M, dtype=bool)
        if self.skip_zero:
            flags = reader.take(ex.zero_flags, self._flag_index())
            if ((flags != 0) & (flags != 1)).any():
                raise FormatError("zero-channel flag out of range")
            zero = flags == 1

        def decode(i: int, where: Tensor, scales: Tensor, m: Tensor) -> Tensor:
            index = ex.index(scales).numpy()
            out = np.zeros(index.shape, dtype=np.int64)
            keep = ~zero[i * c:(i + 1) * c]
            if keep.any():
                out[:, keep] = reader.take(ex.y_tables, index[:, keep]).reshape(index[:, keep].shape)
            return torch.from_numpy(out)
        return self._code_slices(ex, scales_q, means_q, tile, decode)
