"""Channel-conditional entropy model: the hyperprior of ``latent.hyperprior`` with y coded
in channel slices, each slice's Gaussian parameters refined from the slices decoded before it.
The slices follow z in the same rANS stream, in order (``entropy.StreamWriter``).

Minnen & Singh, "Channel-wise autoregressive entropy models for learned image compression",
ICIP 2020. Per slice ``i`` of ``C = M / slices`` channels (``hs`` = the hyper-synthesis
output for those channels, ``y_hat_<i`` = the slices already decoded, gained domain)::

    (scales_i, means_i) = hs_i + cc_i(concat(hs_i, y_hat_0, ..., y_hat_{i-1}))
    y_sym_i = round(y_g_i - means_i)        y_hat_i = y_sym_i + means_i

Optionally (``lrp``), the paper's latent residual prediction: a float network per slice
predicts the rounding error of ``y_hat_i`` from ``means_i`` and ``y_hat_0..i``, and the
synthesis gets ``y_hat_i + 0.5 tanh(lrp_i(...))``. It reads only decoded values and does
not change what is coded.

Departures from the paper, all for the exact decoder or for warm starts:

* ``cc_i`` is a conv/ReLU stack exported as an integer network (``nn.integer``) and sees
  only integers (the fixed-point hyper output and ``y_hat``), so the decoder rebuilds the
  coder's parameters bit-exactly on any machine. For the same reason the later slices'
  context is ``y_hat`` without the residual prediction (the paper feeds them the
  corrected slices).
* the correction is residual and its last layer starts at zero, so an untrained ``cc``
  is exactly the mean-scale hyperprior: training can start from a shipped ``msh`` model.
  The residual prediction's last layer starts at zero too, so adding it to a trained
  ``charm`` changes nothing at step 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter
from liccodec.latent.hyperprior import ExactParams, GainedHyperprior, SlicedHyperprior, _quantize_y
from liccodec.nn import correction_net
from liccodec.nn.integer import ACT_BITS, ACT_CLIP, IntegerNet
from liccodec.tiling import Geometry, axis_ops, run_tiled


class LatentResidual(nn.Module):
    """Latent residual prediction: ``concat(means, y_hat)`` (B, 2M, h, w), gained domain
    -> ``y_hat + 0.5 tanh(r)`` (B, M, h, w) in fp32, where slice i of ``r`` comes from
    ``means_i`` and ``y_hat_0..i``. A float network like the synthesis it feeds."""

    def __init__(self, M: int, slices: int, hidden: int):
        super().__init__()
        self.c = M // slices
        self.nets = nn.ModuleList(correction_net((i + 2) * self.c, hidden, self.c) for i in range(slices))

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """Every slice's network has the same receptive field (``liccodec.tiling``)."""
        return axis_ops(self.nets[0])

    def forward(self, means_and_y: Tensor) -> Tensor:
        c, M = self.c, self.c * len(self.nets)
        means, y_hat = means_and_y[:, :M], means_and_y[:, M:]
        r = [net(torch.cat([means[:, i * c:(i + 1) * c], y_hat[:, :(i + 1) * c]], dim=1))
             for i, net in enumerate(self.nets)]
        with torch.autocast(means_and_y.device.type, enabled=False):
            return y_hat.float() + 0.5 * torch.tanh(torch.cat(r, dim=1).float())


@dataclass
class ChannelExact(ExactParams):
    """The hyperprior's exact state plus the integer slice networks."""

    cc: tuple[IntegerNet, ...]

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        cc = []
        while f"exact.cc.{len(cc)}.0.weight" in t:
            cc.append(IntegerNet.from_tensors(t, f"exact.cc.{len(cc)}"))
        return {**super().fields_from(t), "cc": tuple(cc)}

    def to_tensors(self) -> dict[str, Tensor]:
        out = super().to_tensors()
        for i, net in enumerate(self.cc):
            out.update(net.to_tensors(f"exact.cc.{i}"))
        return out


class ChannelConditional(SlicedHyperprior):
    """:class:`SlicedHyperprior` with y's ``slices`` groups coded one after another."""

    exact_cls = ChannelExact

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, lrp: bool = False,
                 hyper: tuple[int, ...] = ()):
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference, hyper)
        # a float network that decoding runs too, so it is built for inference as well
        self.lrp = LatentResidual(M, slices, hidden) if lrp else None

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        c, extra = M // self.slices, self._extra_context()
        self.cc = nn.ModuleList(correction_net((i + 2) * c, self.hidden, 2 * c, c_extra=extra)
                                for i in range(self.slices))

    def _extra_context(self) -> int:
        """Channels that each slice network reads after its context (s_i, m_i, y_hat_<i): none
        here; a subclass that adds context (``latent.dictionary``) says how many."""
        return 0

    def _correct(self, i: int, ctx: Tensor) -> Tensor:
        """Training: slice i's correction (d_s, d_m) from its context ``concat(s_i, m_i, y_hat_<i)``."""
        return self.cc[i](ctx)

    training_only = (*GainedHyperprior.training_only, "cc.")

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), **{f"cc.{i}": net for i, net in enumerate(self.cc)}}

    def _part(self, t: Tensor, i: int) -> Tensor:
        """Slice ``i`` of a (B, M or 2M-chunk, h, w) tensor's channels."""
        c = self.M // self.slices
        return t[:, i * c:(i + 1) * c]

    def _y_forward(self, y_g: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        liks, y_hats, final_means = [], [], []
        for i in range(self.slices):
            s, m = self._part(scales, i), self._part(means, i)
            d_s, d_m = self._correct(i, torch.cat([s, m, *y_hats], dim=1)).chunk(2, dim=1)
            with torch.autocast(y_g.device.type, enabled=False):
                # add in fp32: under bf16 autocast a bf16 sum would round the means again
                final_means.append(m.float() + d_m.float())
                lik, y_hat = _quantize_y(self._part(y_g, i).float(), s.float() + d_s.float(),
                                         final_means[-1], self.training)
            liks.append(lik)
            y_hats.append(y_hat)
        y_hat = torch.cat(y_hats, dim=1)
        if self.lrp is not None:
            y_hat = self.lrp(torch.cat([*final_means, y_hat], dim=1))
        return torch.cat(liks, dim=1), y_hat

    # ---- exact coding -----------------------------------------------------------------
    def _code_slices(self, ex: ChannelExact, scales_q: Tensor, means_q: Tensor, tile: int | None,
                     code: Callable[[int, Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """Run the slices in order (``liccodec.runtime.code_slices``, the decoder's own loop);
        ``code(i, index, means_q)`` encodes or decodes slice i and returns its symbols.
        Returns (y symbols, means in ACT_BITS fixed point)."""
        from liccodec import runtime

        if len(ex.cc) != self.slices:
            raise ValueError(f"weights carry {len(ex.cc)} slice networks, the model has {self.slices} slices")
        syms, mq = runtime.code_slices(self._slice_nets(ex), ex.thresholds.numpy(),
                                       scales_q.to(torch.int64).numpy(), means_q.to(torch.int64).numpy(), tile,
                                       lambda i, index, m: code(i, torch.from_numpy(index),
                                                                torch.from_numpy(m)).numpy())
        return torch.from_numpy(syms), torch.from_numpy(mq)

    def _slice_nets(self, ex: ChannelExact) -> list:
        """The exact slice networks that ``runtime.code_slices`` runs: numpy callables from a
        slice's context to its (d_s, d_m), with ``axis_ops()`` for tiling."""
        return [net._exact for net in ex.cc]

    def _encode_y(self, ex: ChannelExact, y_g: Tensor, scales_q: Tensor, means_q: Tensor,
                  writer: StreamWriter, tile: int | None) -> tuple[Tensor, Tensor]:
        def encode(i: int, index: Tensor, m: Tensor) -> Tensor:
            y_sym = torch.round(self._part(y_g, i) - m.double() / 2**ACT_BITS).to(torch.int64)
            writer.add(ex.y_tables, y_sym.numpy(), index.numpy())
            return y_sym
        return self._code_slices(ex, scales_q, means_q, tile, encode)

    def _decode_y(self, ex: ChannelExact, reader: StreamReader, scales_q: Tensor, means_q: Tensor,
                  tile: int | None) -> tuple[Tensor, Tensor]:
        def decode(i: int, index: Tensor, m: Tensor) -> Tensor:
            return torch.from_numpy(reader.take(ex.y_tables, index.numpy())).view_as(index)
        return self._code_slices(ex, scales_q, means_q, tile, decode)

    def _y_hat(self, y_sym: Tensor, means_q: Tensor, tile: int | None) -> Tensor:
        y_hat = super()._y_hat(y_sym, means_q, tile)
        if self.lrp is None:
            return y_hat
        means = (means_q.double() / 2**ACT_BITS).float()
        ctx = torch.cat([means, y_hat], dim=1).to(self.gain.log_gain.device)
        return self.lrp(ctx) if tile is None else run_tiled(self.lrp, ctx, Geometry.of(self.lrp), tile)


def _fixed(y_sym: Tensor, means_q: Tensor) -> Tensor:
    """y_hat in ACT_BITS fixed point, as the next slices' networks see it. Symbols beyond
    what an activation can hold are clipped first (the network's input clip would clip them
    anyway), so that no product can leave int64 whatever a file contains."""
    limit = ACT_CLIP >> ACT_BITS
    return y_sym.clamp(-limit, limit) * (1 << ACT_BITS) + means_q
