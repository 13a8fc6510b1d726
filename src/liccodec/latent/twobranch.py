"""Two-branch latent codec: a high-resolution (HR, 1/16) and a low-resolution (LR, 1/32)
latent, each coded channel-wise in slices, the decoded HR latent conditioning the LR one.

Fu, Liang, Liang, Fang, Zhang, Han, "Learned Image Compression with Dual-Branch Encoder and
Conditional Information Coding", DCC 2024. Two branches of the transforms give the two
latents (here the octave transforms of ``nn.octave``, packed into one tensor by
``nn.octave.pack``); "the high-resolution latent representation [is used] as conditional
information for the low-resolution latent representation", and both are coded by "a
parallel channel-wise auto-regressive entropy model" (no serial spatial context). Per quality
(``g``: gains, ``[.]_q``: integer, ACT_BITS fixed point)::

    z     = Q(h_a(y g))                 z_low = Q(h_a_low(y_low g_low))        (factorized priors)
    (s, m)          = h_s(z_hat)                                           charm's hyperprior
    y: charm's slices i = 0..S-1        (s_i, m_i) += cc_i(s_i, m_i, y_hat_<i)
    c               = cond(y_hat)                                          HR -> LR, stride 2
    (s_low, m_low)  = h_s_low(concat(z_hat, z_low_hat))
    y_low: slices j = 0..S_low-1        (s_low_j, m_low_j) += cc_low_j(s_low_j, m_low_j, c, y_low_hat_<j)

``cond`` reads the decoded HR latent (before charm's residual prediction, which is float) at
1/16 and gives ``cond_ch`` channels at 1/32; every LR slice network reads it. The stream holds
z, z_low, y's S slices, then y_low's S_low slices: S + S_low + 2 steps of one rANS stream.
Decoding runs S + S_low dependent slice steps, each a small integer network over the whole
latent at once ("parallel": no loop over positions).

Exactness. h_s, h_s_low, cond and every slice network are integer networks (``nn.integer``)
on integer inputs (the fixed-point hyper-latents and decoded latents), so the decoder
rebuilds every scale index and mean bit-exactly on any machine.

Warm starts. The HR side keeps charm's names and shapes (h_a, h_s, the z prior, gains, the
slice networks ``cc.*`` and the residual prediction ``lrp``). Nothing of the LR side reaches
the HR latent's coding (it is coded first), so with ``init`` = a shipped ``charm`` model the
HR latent is coded exactly as that charm codes y. The LR side starts nearly free: h_s_low's
last layer at zero (scales at their lower bound, means 0), its z prior narrow around 0
(``latent.octave.LOW_PRIOR_SCALE``), and the LR slice networks' last layers at zero, so the
HR -> LR conditioning starts as a zero correction (``nn.correction_net``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter, TableSet
from liccodec.fixedpoint import ACT_BITS
from liccodec.latent.base import LatentOut
from liccodec.latent.channelwise import ChannelConditional, ChannelExact
from liccodec.latent.hyperprior import GainedHyperprior, _quantize_y
from liccodec.latent.octave import LowHyperprior, _fixed, _tiled
from liccodec.nn import conv, correction_net
from liccodec.nn.integer import IntegerNet
from liccodec.nn.octave import pack, unpack
from liccodec.tiling import Geometry


@dataclass
class TwoBranchExact(ChannelExact):
    """charm's exact state (HR hyperprior, slice networks) plus the LR side's: its hyper-
    synthesis, the conditioning network, its slice networks, z_low's median, gains and tables."""

    hs_low: IntegerNet
    cond: IntegerNet
    cc_low: tuple[IntegerNet, ...]
    z_low_median: Tensor        # (N_low,) int64, ACT_BITS fractional bits
    inv_hyper_gain_low: Tensor  # (levels, N_low) int64, GAIN_BITS fractional bits
    z_low_tables: TableSet

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        cc_low = []
        while f"exact.cc_low.{len(cc_low)}.0.weight" in t:
            cc_low.append(IntegerNet.from_tensors(t, f"exact.cc_low.{len(cc_low)}"))
        p = "exact.z_low_tables"
        return {**super().fields_from(t), "hs_low": IntegerNet.from_tensors(t, "exact.h_s_low"),
                "cond": IntegerNet.from_tensors(t, "exact.cond"), "cc_low": tuple(cc_low),
                "z_low_median": t["exact.z_low_median"], "inv_hyper_gain_low": t["exact.inv_hyper_gain_low"],
                "z_low_tables": TableSet(t[f"{p}.pmf"].numpy(), t[f"{p}.length"].numpy(), t[f"{p}.offset"].numpy())}

    def to_tensors(self) -> dict[str, Tensor]:
        tab = self.z_low_tables
        out = {**super().to_tensors(), **self.hs_low.to_tensors("exact.h_s_low"), **self.cond.to_tensors("exact.cond"),
               "exact.z_low_median": self.z_low_median, "exact.inv_hyper_gain_low": self.inv_hyper_gain_low,
               "exact.z_low_tables.pmf": torch.from_numpy(tab.pmf),
               "exact.z_low_tables.length": torch.from_numpy(tab.lengths.astype(np.int32)),
               "exact.z_low_tables.offset": torch.from_numpy(tab.offsets.astype(np.int32))}
        for i, net in enumerate(self.cc_low):
            out.update(net.to_tensors(f"exact.cc_low.{i}"))
        return out


class TwoBranchLatent(LowHyperprior, ChannelConditional):
    """:class:`ChannelConditional` for the HR latent (charm's names) plus the LR latent's
    gains, hyperprior (``latent.octave.LowHyperprior``, as octave's), HR -> LR conditioning
    and slices. Its ``y`` is the packed pair
    (``nn.octave.pack``): 4M + M_low channels at 1/32 of the image."""

    exact_cls = TwoBranchExact
    # the LR latent has no place in a quality map drawn on y's grid (as octave): refused
    spatial_quality = False

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int, N_low: int, M_low: int,
                 slices_low: int, hidden_low: int, cond_hidden: int, cond_ch: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, lrp: bool = False):
        if M_low % slices_low:
            raise ValueError(f"M_low={M_low} does not split into {slices_low} equal slices")
        self.N_low, self.M_low, self.slices_low, self.hidden_low = N_low, M_low, slices_low, hidden_low
        self.cond_hidden, self.cond_ch = cond_hidden, cond_ch
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference, lrp)
        self._add_low_parts(levels, init_log_gain)  # after charm's parts: their order stays

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        self._add_low_training_parts(N)  # octave's LR hyper-synthesis and z_low prior
        c = self.M_low // self.slices_low
        # the decoded HR latent (1/16) brought to the LR grid (1/32): the conditional information
        self.cond = nn.Sequential(conv(M, self.cond_hidden, 5, 2), nn.ReLU(inplace=True),
                                  conv(self.cond_hidden, self.cond_ch, 3, 1))
        self.cc_low = nn.ModuleList(correction_net((j + 2) * c + self.cond_ch, self.hidden_low, 2 * c)
                                    for j in range(self.slices_low))

    training_only = (*ChannelConditional.training_only, "h_s_low.", "entropy_bottleneck_low.", "cond.", "cc_low.")
    reference_only = (*GainedHyperprior.reference_only, "entropy_bottleneck_low.")
    float16_export = (*GainedHyperprior.float16_export, "h_a_low.")

    @property
    def downsampling(self) -> int:
        """Positions of the packed y (1/32) per position of z and z_low (1/64)."""
        return Geometry.of(self.h_a_low).down

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), "h_s_low": self.h_s_low, "cond": self.cond,
                **{f"cc_low.{j}": net for j, net in enumerate(self.cc_low)}}

    def _sliced(self, y_g: Tensor, scales: Tensor, means: Tensor, slices: int,
                correct: Callable[[int, Tensor], Tensor], cond: tuple[Tensor, ...] = ()
                ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Training: ``slices`` channel slices in order, each corrected by ``correct(i,
        concat(s_i, m_i, *cond, y_hat_<i))`` -> (likelihoods, y_hat, the final means per
        slice). With ``cond`` empty this is ``ChannelConditional._y_forward`` op for op."""
        c = y_g.shape[1] // slices
        liks, y_hats, final_means = [], [], []
        for i in range(slices):
            s, m = scales[:, i * c:(i + 1) * c], means[:, i * c:(i + 1) * c]
            d_s, d_m = correct(i, torch.cat([s, m, *cond, *y_hats], dim=1)).chunk(2, dim=1)
            with torch.autocast(y_g.device.type, enabled=False):
                # add in fp32: under bf16 autocast a bf16 sum would round the means again
                final_means.append(m.float() + d_m.float())
                lik, y_hat = _quantize_y(y_g[:, i * c:(i + 1) * c].float(), s.float() + d_s.float(),
                                         final_means[-1], self.training)
            liks.append(lik)
            y_hats.append(y_hat)
        return torch.cat(liks, dim=1), torch.cat(y_hats, dim=1), final_means

    def forward(self, y: Tensor, level: Tensor) -> LatentOut:
        (y_g, y_low_g), (ig, ig_low), (z_hat, z_low_hat), (z_lik, z_low_lik) = self._hyper_forward(y, level)
        # HR first: charm's slices
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        lik, y_hat, final_means = self._sliced(y_g, scales, means, self.slices, self._correct)
        # then LR, each slice reading the decoded HR latent (before the residual prediction,
        # as the integer path sees it)
        cond = self.cond(y_hat)
        s_low, m_low = self.h_s_low(torch.cat([z_hat, z_low_hat], dim=1)).chunk(2, dim=1)
        low_lik, y_low_hat, _ = self._sliced(y_low_g, s_low, m_low, self.slices_low,
                                             lambda j, ctx: self.cc_low[j](ctx), (cond.to(s_low.dtype),))
        if self.lrp is not None:
            y_hat = self.lrp(torch.cat([*final_means, y_hat], dim=1))
        return LatentOut(pack(y_hat * ig, y_low_hat * ig_low),
                         {"y": lik, "z": z_lik, "y_low": low_lik, "z_low": z_low_lik})

    # ---- exact coding --------------------------------------------------------------------
    def _check_exact(self, ex: TwoBranchExact) -> None:
        if len(ex.cc) != self.slices or len(ex.cc_low) != self.slices_low:
            raise ValueError(f"weights carry {len(ex.cc)} + {len(ex.cc_low)} slice networks, the model has "
                             f"{self.slices} + {self.slices_low} slices")
        if ex.hs_low.layers[-1].weight.shape[0] != 2 * self.M_low or ex.cond.layers[0].weight.shape[1] != self.M:
            raise ValueError("the weights' LR hyperprior or conditioning network does not fit the model's latents")

    def _code(self, ex: TwoBranchExact, z_sym: np.ndarray, z_low_sym: np.ndarray, q_milli: int, tile: int | None,
              code: Callable[[str, int, np.ndarray, np.ndarray], np.ndarray]) -> tuple[Tensor, Tensor]:
        """From both hyper-latents' symbols, code y's slices then y_low's: ``code(which, i,
        scale index, means)`` encodes or decodes slice i of "y" or "y_low" and returns its
        symbols. Returns the packed (symbols, means in ACT_BITS fixed point) of both, the same
        on both sides. ``tile`` (a core side in positions of the packed y) runs every network
        tile by tile, bit-identical."""
        from liccodec import runtime

        z_tile = None if tile is None else max(1, tile // 2)
        hr_tile = None if tile is None else 2 * tile
        thresholds = ex.thresholds.numpy()
        scales, means = runtime.hyper_params(ex.hs._exact, ex.z_median.numpy(), ex.inv_hyper_gain.numpy(), z_sym,
                                             q_milli, z_tile)
        high_sym, high_mq = runtime.code_slices(self._slice_nets(ex), thresholds, scales, means, hr_tile,
                                                lambda i, index, m: code("y", i, index, m))
        cond = _tiled(ex.cond._exact, _fixed(high_sym, high_mq), hr_tile)
        s_low, m_low = runtime.hyper_params(
            ex.hs_low._exact, np.concatenate([ex.z_median.numpy(), ex.z_low_median.numpy()]),
            np.concatenate([ex.inv_hyper_gain.numpy(), ex.inv_hyper_gain_low.numpy()], axis=1),
            np.concatenate([z_sym, z_low_sym], axis=1), q_milli, z_tile)
        c = self.M_low // self.slices_low
        syms, mq, y_hat_q = [], [], []
        for j, net in enumerate(ex.cc_low):
            s, m = s_low[:, j * c:(j + 1) * c], m_low[:, j * c:(j + 1) * c]
            d = _tiled(net._exact, np.concatenate([s, m, cond, *y_hat_q], axis=1), tile)
            m = m + d[:, c:]
            y_sym = code("y_low", j, np.searchsorted(thresholds, s + d[:, :c], side="left"), m)
            syms.append(y_sym)
            mq.append(m)
            y_hat_q.append(_fixed(y_sym, m))
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return (pack(t(high_sym), t(np.concatenate(syms, axis=1))),
                pack(t(high_mq), t(np.concatenate(mq, axis=1))))

    @torch.no_grad()
    def encode(self, y: Tensor, q_milli: int, writer: StreamWriter, tile: int | None = None,
               qmap: np.ndarray | None = None) -> Tensor:
        """Code the packed y (1, 4M + M_low, H/32, W/32) into ``writer``: z, z_low, y's slices,
        y_low's slices. ``tile`` (packed-y positions) runs every network tile by tile."""
        self._check_qmap(qmap)
        ex = self._require_exact()
        self._check_exact(ex)
        syms, y_g, y_low_g = self._encode_z(ex, y, q_milli, writer, tile)
        values = {"y": y_g.double().cpu().numpy(), "y_low": y_low_g.double().cpu().numpy()}
        widths = {"y": self.M // self.slices, "y_low": self.M_low // self.slices_low}

        def code(which: str, i: int, index: np.ndarray, means_q: np.ndarray) -> np.ndarray:
            c = widths[which]
            y_sym = np.round(values[which][:, i * c:(i + 1) * c] - means_q / 2.0**ACT_BITS).astype(np.int64)
            writer.add(ex.y_tables, y_sym, index)
            return y_sym

        y_sym, means_q = self._code(ex, *syms, q_milli, tile, code)
        return self._packed_hat(y_sym, means_q, q_milli, tile, y.device)

    def _decode_ints(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
                     tile: int | None) -> tuple[Tensor, Tensor]:
        """-> packed (y symbols, means in ACT_BITS fixed point): integers only."""
        ex = self._require_exact()
        self._check_exact(ex)
        syms = self._decode_z(ex, reader, z_hw)

        def code(which: str, i: int, index: np.ndarray, means_q: np.ndarray) -> np.ndarray:
            return reader.take(ex.y_tables, index).reshape(index.shape)

        return self._code(ex, *syms, q_milli, tile, code)

    @torch.no_grad()
    def decode(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
               tile: int | None = None, qmap: np.ndarray | None = None) -> Tensor:
        """Inverse of :meth:`encode`: -> the packed y_hat for z of size ``z_hw``."""
        self._check_qmap(qmap)
        y_sym, means_q = self._decode_ints(reader, z_hw, q_milli, tile)
        return self._packed_hat(y_sym, means_q, q_milli, tile, self.gain.log_gain.device)

    def _packed_hat(self, y_sym: Tensor, means_q: Tensor, q_milli: int, tile: int | None,
                    device: torch.device) -> Tensor:
        """What the synthesis gets: the HR latent through charm's residual prediction, both
        latents times their inverse gains, packed."""
        level = self._float_level(q_milli, 1, device)
        _, ig = self.gain(level)
        _, ig_low = self.gain_low(level)
        high_sym, low_sym = unpack(y_sym, self.M)
        high_mq, low_mq = unpack(means_q, self.M)
        high = ChannelConditional._y_hat(self, high_sym, high_mq, None if tile is None else 2 * tile)
        low = (low_sym.double() + low_mq.double() / 2**ACT_BITS).float()
        return pack(high.to(device) * ig, low.to(device) * ig_low)
