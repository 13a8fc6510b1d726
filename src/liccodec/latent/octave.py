"""Two-resolution hyperprior with cross-resolution parameter estimation, and no context model.

Fu et al., "Learned Image Compression with Generalized Octave Convolution and Cross-Resolution
Parameter Estimation", arXiv 2209.03353 (Signal Processing, 2023). The octave transforms
(``nn.octave``) give a high-resolution latent ``y`` (1/16 of the image) and a low-resolution
one ``y_low`` (1/32), packed into one tensor (``nn.octave.pack``). Each has gain units and a
hyper-latent at 1/64; the LR latent is coded first and its decoded values refine the HR
latent's Gaussian parameters (CRPE). Per quality (``g``: gains, ``[.]_q``: integer, ACT_BITS
fixed point)::

    z     = Q(h_a(y g))            z_low = Q(h_a_low(y_low g_low))          (factorized priors)
    (s, m)         = h_s(z_hat)                                              y's hyperprior (charm's)
    (s_low, m_low) = h_s_low(concat(z_hat, z_low_hat))                       y_low's
    y_low_sym = round(y_low g_low - m_low)      y_low_hat = y_low_sym + m_low
    (d_s, d_m) = crpe(concat(s, m, crpe_up(y_low_hat)))                      cross-resolution
    y_sym = round(y g - m - d_m), scale index of s + d_s

``crpe_up`` is a learned 2x upsampling (one 5x5 transposed convolution, as the paper's),
``crpe`` three 1x1 convolutions (the paper's entropy-parameter network). The stream holds
z, z_low, y_low, y, in that order, four steps of one rANS stream: the decoder runs no loop
over slices or positions, only four integer networks, each once over its whole latent.

Departures from the paper, all for the exact decoder or for warm starts from ``charm``:

* every network that sets a coder parameter (h_s, h_s_low, crpe_up, crpe) is an integer
  network (``nn.integer``) on integer inputs (the fixed-point hyper-latents, y_low_hat), so
  the decoder rebuilds the parameters bit-exactly on any machine;
* the CRPE output is a residual correction of the HR hyperprior's (s, m), its last layer
  zero at the start, and h_a, h_s, the z prior and the HR gains keep charm's names: warm-
  started from a shipped ``charm`` model, the HR latent is coded exactly as that model's
  mean-scale hyperprior codes it (without its slices) until CRPE has learned;
* one hyper-latent per resolution, each with a factorized prior (the paper stacks a second
  hyperprior on top and exchanges information between the two hyper-latents in octave
  hyper-transforms); here only h_s_low reads both hyper-latents;
* the LR hyper-synthesis' last layer starts at zero (scales at their lower bound, means 0)
  and the LR z prior starts narrow around 0 (:data:`LOW_PRIOR_SCALE`), which with the small
  LR latent of ``nn.octave.OctaveAnalysis`` makes y_low and z_low nearly free at the start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter, TableSet
from liccodec.errors import FormatError
from liccodec.fixedpoint import ACT_BITS, ACT_CLIP, GAIN_BITS, Z_LIMIT
from liccodec.latent.base import LatentOut
from liccodec.latent.hyperprior import (ExactParams, GainedHyperprior, _quantize_y, _z_tables, prior_quantiles)
from liccodec.nn import GainUnits, conv, correction_net, deconv, ste_round
from liccodec.nn.integer import IntegerNet
from liccodec.nn.octave import pack, unpack
from liccodec.tiling import Geometry, run_tiled

#: initial spread of the LR hyper-latent's factorized prior (CompressAI's ``init_scale``)
LOW_PRIOR_SCALE = 0.1


@dataclass
class OctaveExact(ExactParams):
    """The HR hyperprior's exact state (charm's names) plus the LR hyperprior's and CRPE's."""

    hs_low: IntegerNet
    crpe_up: IntegerNet
    crpe: IntegerNet
    z_low_median: Tensor        # (N_low,) int64, ACT_BITS fractional bits
    inv_hyper_gain_low: Tensor  # (levels, N_low) int64, GAIN_BITS fractional bits
    z_low_tables: TableSet

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        p = "exact.z_low_tables"
        return {**super().fields_from(t), "hs_low": IntegerNet.from_tensors(t, "exact.h_s_low"),
                "crpe_up": IntegerNet.from_tensors(t, "exact.crpe_up"),
                "crpe": IntegerNet.from_tensors(t, "exact.crpe"), "z_low_median": t["exact.z_low_median"],
                "inv_hyper_gain_low": t["exact.inv_hyper_gain_low"],
                "z_low_tables": TableSet(t[f"{p}.pmf"].numpy(), t[f"{p}.length"].numpy(), t[f"{p}.offset"].numpy())}

    def to_tensors(self) -> dict[str, Tensor]:
        tab = self.z_low_tables
        return {**super().to_tensors(), **self.hs_low.to_tensors("exact.h_s_low"),
                **self.crpe_up.to_tensors("exact.crpe_up"), **self.crpe.to_tensors("exact.crpe"),
                "exact.z_low_median": self.z_low_median, "exact.inv_hyper_gain_low": self.inv_hyper_gain_low,
                "exact.z_low_tables.pmf": torch.from_numpy(tab.pmf),
                "exact.z_low_tables.length": torch.from_numpy(tab.lengths.astype(np.int32)),
                "exact.z_low_tables.offset": torch.from_numpy(tab.offsets.astype(np.int32))}


def _fixed(y_sym: np.ndarray, means_q: np.ndarray) -> np.ndarray:
    """Decoded values in ACT_BITS fixed point, symbols clipped to what an activation holds
    (as ``runtime.code_slices`` does), so no product leaves int64 whatever a file contains."""
    limit = ACT_CLIP >> ACT_BITS
    return np.clip(y_sym, -limit, limit) * (1 << ACT_BITS) + means_q


def _tiled(net: Callable[[np.ndarray], np.ndarray], x: np.ndarray, tile: int | None) -> np.ndarray:
    return net(x) if tile is None else run_tiled(net, x, Geometry.of(net), tile)


class LowHyperprior:
    """What a latent codec with a second, low-resolution (LR) latent shares (``octave``,
    ``twobranch``): y_low's own z prior, gains and h_a (``entropy_bottleneck_low``,
    ``gain_low``, ``hyper_gain_low``, ``h_a_low``), their training hooks and export, and the
    coding of the two hyper-latents, z then z_low, at the head of the stream. Mixed in before
    a :class:`GainedHyperprior`, whose methods it extends."""

    # ---- the LR latent's parts, registered after the HR codec's (so its names keep their order)
    def _add_low_parts(self, levels: int, init_log_gain: Tensor | None) -> None:
        """y_low's hyper-analysis and gains (kept in inference builds)."""
        N_low, M_low = self.N_low, self.M_low
        self.h_a_low = nn.Sequential(conv(M_low, N_low, 3, 1), nn.LeakyReLU(inplace=True), conv(N_low, N_low, 5, 2))
        self.gain_low = GainUnits(levels, M_low, init_log_gain)
        self.hyper_gain_low = GainUnits(levels, N_low, below="linear")

    def _add_low_training_parts(self, N: int) -> None:
        """y_low's float hyper-synthesis, which reads both hyper-latents (both at 1/64: the
        octave hyper-synthesis' HR -> LR exchange), starting at zero, and z_low's prior."""
        from compressai.entropy_models import EntropyBottleneck

        N_low, M_low = self.N_low, self.M_low
        self.h_s_low = nn.Sequential(
            deconv(N + N_low, M_low, 5, 2), nn.ReLU(inplace=True),
            conv(M_low, M_low * 3 // 2, 3, 1), nn.ReLU(inplace=True),
            conv(M_low * 3 // 2, 2 * M_low, 3, 1),
        )
        nn.init.zeros_(self.h_s_low[-1].weight)
        nn.init.zeros_(self.h_s_low[-1].bias)
        # z_low is about 0 at the start (the LR latent starts small): a prior narrow and centred
        # there codes it nearly free, where CompressAI's default (init_scale 10, random offsets)
        # would spend about 5 bits a symbol on it until it learned
        self.entropy_bottleneck_low = EntropyBottleneck(N_low, init_scale=LOW_PRIOR_SCALE)
        with torch.no_grad():
            for b in self.entropy_bottleneck_low.biases:
                b.zero_()

    # ---- training hooks ----------------------------------------------------------------
    def level_tables(self) -> tuple[str, ...]:
        return (*super().level_tables(), "gain_low.log_gain", "gain_low.log_inv_gain",
                "hyper_gain_low.log_gain", "hyper_gain_low.log_inv_gain")

    def _hyper_forward(self, y: Tensor, level: Tensor):
        """Training: the packed ``y``'s two latents gained, their inverse gains, and both
        hyper-latents as the hyper-synthesis sees them with their likelihoods (fp32):
        ((y_g, y_low_g), (ig, ig_low), (z_hat, z_low_hat), (z_lik, z_low_lik))."""
        y_high, y_low = unpack(y, self.M)
        g, ig = self.gain(level)
        g_low, ig_low = self.gain_low(level)
        hg, ihg = self.hyper_gain(level)
        hg_low, ihg_low = self.hyper_gain_low(level)
        y_g, y_low_g = y_high * g, y_low * g_low
        z_g, z_low_g = self.h_a(y_g) * hg, self.h_a_low(y_low_g) * hg_low
        with torch.autocast(y.device.type, enabled=False):
            z_hat, z_lik = self._z_forward(self.entropy_bottleneck, z_g.float(), ihg)
            z_low_hat, z_low_lik = self._z_forward(self.entropy_bottleneck_low, z_low_g.float(), ihg_low)
        return (y_g, y_low_g), (ig, ig_low), (z_hat, z_low_hat), (z_lik, z_low_lik)

    @staticmethod
    def _z_forward(eb: nn.Module, z_g: Tensor, ihg: Tensor) -> tuple[Tensor, Tensor]:
        """(z as the hyper-synthesis sees it, z's likelihoods), fp32, as the hyperprior's."""
        _, lik = eb(z_g)
        med = eb._get_medians().reshape(1, -1, 1, 1)
        return (ste_round(z_g - med) + med) * ihg, lik

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.loss() + self.entropy_bottleneck_low.loss()

    def aux_parameters(self) -> list[nn.Parameter]:
        return [self.entropy_bottleneck.quantiles, self.entropy_bottleneck_low.quantiles]

    @torch.no_grad()
    def refresh(self) -> None:
        super().refresh()
        eb = self.entropy_bottleneck_low
        eb.quantiles.copy_(prior_quantiles(eb).to(eb.quantiles))

    # ---- export ------------------------------------------------------------------------
    def export_exact(self, scales: np.ndarray | None = None) -> dict[str, Tensor]:
        out = super().export_exact(scales)
        eb = self.entropy_bottleneck_low
        q = prior_quantiles(eb)
        out["exact.z_low_median"] = torch.round(q[:, 0, 1] * 2**ACT_BITS).to(torch.int64)
        ihg = self.hyper_gain_low.log_inv_gain.detach().double().exp().clamp(2.0**-8, 64.0)
        out["exact.inv_hyper_gain_low"] = torch.round(ihg * 2**GAIN_BITS).to(torch.int64)
        out.update({k.replace("exact.z_tables", "exact.z_low_tables"): v for k, v in _z_tables(eb, q).items()})
        return out

    def reference_tensors(self) -> dict[str, Tensor]:
        eb = self.entropy_bottleneck_low
        prior = {f"entropy_bottleneck_low.{n}": p.detach().float() for n, p in eb.named_parameters()}
        prior["entropy_bottleneck_low.quantiles"] = prior_quantiles(eb).float()
        return {**super().reference_tensors(), **prior}

    # ---- exact coding of the hyper-latents -----------------------------------------------
    def _encode_z(self, ex, y: Tensor, q_milli: int, writer: StreamWriter,
                  tile: int | None) -> tuple[list[np.ndarray], Tensor, Tensor]:
        """Code z and z_low of the packed ``y`` into ``writer``; returns their symbols and the
        gained HR and LR latents (float32). ``tile``: packed-y positions (None: whole)."""
        level = self._float_level(q_milli, y.shape[0], y.device)
        y_high, y_low = unpack(y, self.M)
        g, _ = self.gain(level)
        g_low, _ = self.gain_low(level)
        hg, _ = self.hyper_gain(level)
        hg_low, _ = self.hyper_gain_low(level)
        y_g, y_low_g = y_high.float() * g, y_low.float() * g_low
        syms = []
        for h_a, y_part, gain, median, tab, t in (
                (self.h_a, y_g, hg, ex.z_median, ex.z_tables, None if tile is None else 2 * tile),
                (self.h_a_low, y_low_g, hg_low, ex.z_low_median, ex.z_low_tables, tile)):
            x = y_part.to(y.dtype)
            z_g = (h_a(x) if t is None else run_tiled(h_a, x, Geometry.of(h_a), t)).float() * gain
            med = (median.double() / 2**ACT_BITS).view(1, -1, 1, 1)
            z_sym = torch.round(z_g.double().cpu() - med).clamp(-Z_LIMIT, Z_LIMIT).to(torch.int64).numpy()
            writer.add(tab, z_sym, np.broadcast_to(np.arange(z_sym.shape[1]).reshape(1, -1, 1, 1), z_sym.shape))
            syms.append(z_sym)
        return syms, y_g, y_low_g

    def _decode_z(self, ex, reader: StreamReader, z_hw: tuple[int, int]) -> list[np.ndarray]:
        """Inverse of :meth:`_encode_z`: the symbols of z and z_low, each checked in range."""
        h, w = z_hw
        syms = []
        for tab, n in ((ex.z_tables, self.N), (ex.z_low_tables, self.N_low)):
            # before anything grows with the declared size: can the rest of the stream hold it?
            reader.check_room(tab, np.full(n, h * w))
            z_sym = reader.take(tab, np.broadcast_to(np.arange(n).reshape(1, -1, 1, 1), (1, n, h, w)))
            if np.abs(z_sym).max(initial=0) > Z_LIMIT:
                raise FormatError("hyper-latent value out of range")
            syms.append(z_sym.reshape(1, n, h, w))
        return syms


class OctaveHyperprior(LowHyperprior, GainedHyperprior):
    """:class:`GainedHyperprior` for the HR latent (charm's names) plus the LR latent's own
    gains, hyperprior and the cross-resolution parameter estimation. Its ``y`` is the packed
    pair (``nn.octave.pack``): 4M + M_low channels at 1/32 of the image."""

    exact_cls = OctaveExact
    # the gains of both latents would have to follow a map, and the LR latent has no place
    # in a map drawn on y's grid: region-of-interest coding is refused (docs/roi.md)
    spatial_quality = False

    def __init__(self, N: int, M: int, levels: int, N_low: int, M_low: int, up_width: int, crpe_hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False):
        self.N_low, self.M_low, self.up_width, self.crpe_hidden = N_low, M_low, up_width, crpe_hidden
        super().__init__(N, M, levels, init_log_gain, inference)
        self._add_low_parts(levels, init_log_gain)

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        self._add_low_training_parts(N)
        self.crpe_up = nn.Sequential(deconv(self.M_low, self.up_width, 5, 2))
        self.crpe = correction_net(2 * M + self.up_width, self.crpe_hidden, 2 * M, kernel=1)

    training_only = (*GainedHyperprior.training_only, "h_s_low.", "entropy_bottleneck_low.", "crpe_up.", "crpe.")
    reference_only = (*GainedHyperprior.reference_only, "entropy_bottleneck_low.")
    float16_export = (*GainedHyperprior.float16_export, "h_a_low.")

    @property
    def downsampling(self) -> int:
        """Positions of the packed y (1/32) per position of z and z_low (1/64)."""
        return Geometry.of(self.h_a_low).down

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), "h_s_low": self.h_s_low, "crpe_up": self.crpe_up, "crpe": self.crpe}

    def forward(self, y: Tensor, level: Tensor) -> LatentOut:
        (y_g, y_low_g), (ig, ig_low), (z_hat, z_low_hat), (z_lik, z_low_lik) = self._hyper_forward(y, level)
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        s_low, m_low = self.h_s_low(torch.cat([z_hat, z_low_hat], dim=1)).chunk(2, dim=1)
        with torch.autocast(y.device.type, enabled=False):
            low_lik, y_low_hat = _quantize_y(y_low_g.float(), s_low.float(), m_low.float(), self.training)
        up = self.crpe_up(y_low_hat)
        d_s, d_m = self.crpe(torch.cat([scales, means, up.to(scales.dtype)], dim=1)).chunk(2, dim=1)
        with torch.autocast(y.device.type, enabled=False):
            # add in fp32: under bf16 autocast a bf16 sum would round the means again
            lik, y_hat = _quantize_y(y_g.float(), scales.float() + d_s.float(), means.float() + d_m.float(),
                                     self.training)
        return LatentOut(pack(y_hat * ig, y_low_hat * ig_low),
                         {"y": lik, "z": z_lik, "y_low": low_lik, "z_low": z_low_lik})

    # ---- export ------------------------------------------------------------------------
    # ---- exact coding --------------------------------------------------------------------
    def _code(self, ex: OctaveExact, z_sym: np.ndarray, z_low_sym: np.ndarray, q_milli: int, tile: int | None,
              code: Callable[[str, np.ndarray, np.ndarray], np.ndarray]) -> tuple[Tensor, Tensor]:
        """From both hyper-latents' symbols, code y_low then y: ``code(which, scale index,
        means)`` encodes or decodes "y_low" or "y" and returns its symbols. Returns the packed
        (symbols, means in ACT_BITS fixed point) of both, the same on both sides. ``tile`` (a
        core side in positions of the packed y) runs every network tile by tile, bit-identical."""
        from liccodec import runtime

        z_tile = None if tile is None else max(1, tile // 2)
        scales, means = runtime.hyper_params(ex.hs._exact, ex.z_median.numpy(), ex.inv_hyper_gain.numpy(), z_sym,
                                             q_milli, z_tile)
        s_low, m_low = runtime.hyper_params(
            ex.hs_low._exact, np.concatenate([ex.z_median.numpy(), ex.z_low_median.numpy()]),
            np.concatenate([ex.inv_hyper_gain.numpy(), ex.inv_hyper_gain_low.numpy()], axis=1),
            np.concatenate([z_sym, z_low_sym], axis=1), q_milli, z_tile)
        thresholds = ex.thresholds.numpy()
        low_sym = code("y_low", np.searchsorted(thresholds, s_low, side="left"), m_low)
        up = _tiled(ex.crpe_up._exact, _fixed(low_sym, m_low), tile)
        d = _tiled(ex.crpe._exact, np.concatenate([scales, means, up], axis=1), None if tile is None else 2 * tile)
        means = means + d[:, self.M:]
        high_sym = code("y", np.searchsorted(thresholds, scales + d[:, :self.M], side="left"), means)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return pack(t(high_sym), t(low_sym)), pack(t(means), t(m_low))

    def _check_exact(self, ex: OctaveExact) -> None:
        if ex.crpe.layers[-1].weight.shape[0] != 2 * self.M or ex.hs_low.layers[-1].weight.shape[0] != 2 * self.M_low:
            raise ValueError("the weights' LR hyperprior or CRPE network does not fit the model's latents")

    @torch.no_grad()
    def encode(self, y: Tensor, q_milli: int, writer: StreamWriter, tile: int | None = None,
               qmap: np.ndarray | None = None) -> Tensor:
        """Code the packed y (1, 4M + M_low, H/32, W/32) into ``writer``: z, z_low, y_low, y.
        ``tile`` (packed-y positions) runs h_a, h_a_low and the integer networks tile by tile."""
        self._check_qmap(qmap)
        ex = self._require_exact()
        self._check_exact(ex)
        syms, y_g, y_low_g = self._encode_z(ex, y, q_milli, writer, tile)
        values = {"y": y_g.double().cpu().numpy(), "y_low": y_low_g.double().cpu().numpy()}

        def code(which: str, index: np.ndarray, means_q: np.ndarray) -> np.ndarray:
            y_sym = np.round(values[which] - means_q / 2.0**ACT_BITS).astype(np.int64)
            writer.add(ex.y_tables, y_sym, index)
            return y_sym

        y_sym, means_q = self._code(ex, *syms, q_milli, tile, code)
        return self._y_hat(y_sym, means_q, q_milli, y.device)

    def _decode_ints(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
                     tile: int | None) -> tuple[Tensor, Tensor]:
        """-> packed (y symbols, means in ACT_BITS fixed point): integers only."""
        ex = self._require_exact()
        self._check_exact(ex)
        syms = self._decode_z(ex, reader, z_hw)

        def code(which: str, index: np.ndarray, means_q: np.ndarray) -> np.ndarray:
            return reader.take(ex.y_tables, index).reshape(index.shape)

        return self._code(ex, *syms, q_milli, tile, code)

    @torch.no_grad()
    def decode(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
               tile: int | None = None, qmap: np.ndarray | None = None) -> Tensor:
        """Inverse of :meth:`encode`: -> the packed y_hat for z of size ``z_hw``."""
        self._check_qmap(qmap)
        y_sym, means_q = self._decode_ints(reader, z_hw, q_milli, tile)
        return self._y_hat(y_sym, means_q, q_milli, self.gain.log_gain.device)

    def _y_hat(self, y_sym: Tensor, means_q: Tensor, q_milli: int, device: torch.device) -> Tensor:
        """What the synthesis gets: both latents decoded, times their inverse gains, packed."""
        level = self._float_level(q_milli, 1, device)
        _, ig = self.gain(level)
        _, ig_low = self.gain_low(level)
        y_hat = (y_sym.double() + means_q.double() / 2**ACT_BITS).float().to(device)
        high, low = unpack(y_hat, self.M)
        return pack(high * ig, low * ig_low)
