"""Channel-conditional entropy model: the hyperprior of ``latent.hyperprior`` with y coded
in channel slices, each slice's Gaussian parameters refined from the slices decoded before it.

Minnen & Singh, "Channel-wise autoregressive entropy models for learned image compression",
ICIP 2020. Per slice ``i`` of ``C = M / slices`` channels (``hs`` = the hyper-synthesis
output for those channels, ``y_hat_<i`` = the slices already decoded, gained domain)::

    (scales_i, means_i) = hs_i + cc_i(concat(hs_i, y_hat_0, ..., y_hat_{i-1}))
    y_sym_i = round(y_g_i - means_i)        y_hat_i = y_sym_i + means_i

Two departures from the paper, both for the exact decoder:

* ``cc_i`` is a conv/ReLU stack exported as an integer network (``nn.integer``) and sees
  only integers (the fixed-point hyper output and ``y_hat``), so the decoder rebuilds the
  coder's parameters bit-exactly on any machine; the paper's latent residual prediction is
  left out for now (it would feed the synthesis only).
* the correction is residual and its last layer starts at zero, so an untrained ``cc``
  is exactly the mean-scale hyperprior: training can start from a shipped ``msh`` model.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from liccodec.latent.hyperprior import ExactParams, GainedHyperprior, _put, _quantize_y, _take
from liccodec.nn import conv
from liccodec.nn.integer import ACT_BITS, ACT_CLIP
from liccodec.tiling import Geometry, run_tiled


class ChannelConditional(GainedHyperprior):
    """:class:`GainedHyperprior` with y in ``slices`` groups coded one after another."""

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False):
        if M % slices:
            raise ValueError(f"M={M} does not split into {slices} equal slices")
        self.slices, self.hidden = slices, hidden
        super().__init__(N, M, levels, init_log_gain, inference)

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        c = M // self.slices
        self.cc = nn.ModuleList()
        for i in range(self.slices):
            net = nn.Sequential(
                conv(2 * c + i * c, self.hidden, 3, 1), nn.ReLU(inplace=True),
                conv(self.hidden, self.hidden, 3, 1), nn.ReLU(inplace=True),
                conv(self.hidden, 2 * c, 3, 1),
            )
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
            self.cc.append(net)

    training_only = (*GainedHyperprior.training_only, "cc.")

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), **{f"cc.{i}": net for i, net in enumerate(self.cc)}}

    def _part(self, t: Tensor, i: int) -> Tensor:
        """Slice ``i`` of a (B, M or 2M-chunk, h, w) tensor's channels."""
        c = self.M // self.slices
        return t[:, i * c:(i + 1) * c]

    def _y_forward(self, y_g: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        liks, y_hats = [], []
        for i, net in enumerate(self.cc):
            s, m = self._part(scales, i), self._part(means, i)
            d_s, d_m = net(torch.cat([s, m, *y_hats], dim=1)).chunk(2, dim=1)
            with torch.autocast(y_g.device.type, enabled=False):
                # add in fp32: under bf16 autocast a bf16 sum would round the means again
                lik, y_hat = _quantize_y(self._part(y_g, i).float(), s.float() + d_s.float(),
                                         m.float() + d_m.float(), self.training)
            liks.append(lik)
            y_hats.append(y_hat)
        return torch.cat(liks, dim=1), torch.cat(y_hats, dim=1)

    # ---- exact coding -----------------------------------------------------------------
    def _code_slices(self, ex: ExactParams, scales_q: Tensor, means_q: Tensor, tile: int | None,
                     code: Callable[[int, Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """Run the slices in order; ``code(i, index, means_q)`` encodes or decodes slice i and
        returns its symbols. Returns (y symbols, means in ACT_BITS fixed point), the same on
        both sides because each slice's parameters depend only on what was decoded before."""
        if len(ex.cc) != self.slices:
            raise ValueError(f"weights carry {len(ex.cc)} slice networks, the model has {self.slices} slices")
        syms, mq, y_hat_q = [], [], []
        for i, net in enumerate(ex.cc):
            s, m = self._part(scales_q, i), self._part(means_q, i)
            ctx = torch.cat([s, m, *y_hat_q], dim=1)
            d_s, d_m = (net(ctx) if tile is None else run_tiled(net, ctx, Geometry.of(net), tile)).chunk(2, dim=1)
            y_sym = code(i, ex.index(s + d_s), m + d_m)
            syms.append(y_sym)
            mq.append(m + d_m)
            y_hat_q.append(_fixed(y_sym, m + d_m))
        return torch.cat(syms, dim=1), torch.cat(mq, dim=1)

    def _encode_y(self, ex: ExactParams, y_g: Tensor, scales_q: Tensor, means_q: Tensor,
                  streams: dict[str, bytes], tile: int | None) -> tuple[Tensor, Tensor]:
        def encode(i: int, index: Tensor, m: Tensor) -> Tensor:
            y_sym = torch.round(self._part(y_g, i) - m.double() / 2**ACT_BITS).to(torch.int64)
            _put(streams, f"y{i}", *ex.y_tables.encode(y_sym.numpy(), index.numpy()))
            return y_sym
        return self._code_slices(ex, scales_q, means_q, tile, encode)

    def _decode_y(self, ex: ExactParams, streams: dict[str, bytes], scales_q: Tensor, means_q: Tensor,
                  tile: int | None) -> tuple[Tensor, Tensor]:
        def decode(i: int, index: Tensor, m: Tensor) -> Tensor:
            return torch.from_numpy(_take(ex.y_tables, streams, f"y{i}", index)).view_as(index)
        return self._code_slices(ex, scales_q, means_q, tile, decode)

def _fixed(y_sym: Tensor, means_q: Tensor) -> Tensor:
    """y_hat in ACT_BITS fixed point, as the next slices' networks see it. Symbols beyond
    what an activation can hold are clipped first (the network's input clip would clip them
    anyway), so that no product can leave int64 whatever a file contains."""
    limit = ACT_CLIP >> ACT_BITS
    return y_sym.clamp(-limit, limit) * (1 << ACT_BITS) + means_q
