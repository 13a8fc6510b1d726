"""Mean-scale hyperprior with gain units (the entropy model of the default codec).

Minnen, Balle, Toderici, "Joint Autoregressive and Hierarchical Priors for Learned Image
Compression", NeurIPS 2018 (the mean-scale hyperprior, without its serial context model),
with the gain units of Cui et al. (CVPR 2021) for one-model continuous rate.

Data flow (``g`` = gain at the requested level, ``ig`` = inverse gain)::

    y --*g--> y_g --h_a--> z --*hg--> z_g --Q--> z_sym --(factorized prior)--> bits
                                                   |
                                 (z_sym + median) * ihg --h_s (integer net)--> scales, means
                                                                                |
    y_g --Q(y_g - means)--> y_sym --(Gaussian(scale index))--> bits             |
    y_hat = (y_sym + means) * ig  ------------------------------------------->  g_s

Training uses additive uniform noise for the rates and straight-through rounding for what
the synthesis sees ("mixed" quantization, Minnen & Singh, ICIP 2020).

Region-of-interest coding (docs/roi.md) makes ``g`` and ``ig`` spatially varying: the gain
vector of a quality chosen per position of y, as the quality maps of Song et al. ("Variable-
rate deep image compression through spatially-adaptive feature transform", ICCV 2021) do,
here with the gain units alone and no retraining. ``hg``/``ihg`` stay those of the file's
base quality. The gains never enter the integer path: ``h_s`` sees only z (base quality),
the symbols and means live in the gained domain, and the per-position ``ig`` is applied in
float after decoding, as the uniform one is.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

import torch
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter, TableSet, gaussian_tables, reader_of, scale_table
from liccodec.errors import FormatError
from liccodec.fixedpoint import GAIN_BITS, Z_LIMIT
from liccodec.latent.base import Q_UNIT, LatentCodec, LatentOut, level_of_quality, note_gaussian
from liccodec.nn import GainUnits, conv, deconv, lower_bound, ste_round
from liccodec.nn.integer import ACT_BITS, IntegerNet
from liccodec.tiling import Geometry, run_tiled

SCALE_MIN = 0.11
LIKELIHOOD_MIN = 1e-9


def gaussian_likelihood(y: Tensor, scales: Tensor, means: Tensor) -> Tensor:
    """P(round(y) | N(means, scales)) for y already on the integer grid plus noise."""
    values = (y - means).abs()
    scales = lower_bound(scales, SCALE_MIN)
    c = -1.0 / (math.sqrt(2.0) * scales)
    upper = 0.5 * torch.erfc(c * (0.5 - values))
    lower = 0.5 * torch.erfc(c * (-0.5 - values))
    return lower_bound(upper - lower, LIKELIHOOD_MIN)


@dataclass
class ExactParams:
    """The exported, integer-only state that decides the coder's parameters. Codecs built on
    the hyperprior extend it with fields of their own (``latent.channelwise.ChannelExact``)."""

    hs: IntegerNet
    z_median: Tensor      # (N,) int64, ACT_BITS fractional bits
    inv_hyper_gain: Tensor  # (levels, N) int64, GAIN_BITS fractional bits
    thresholds: Tensor    # (S-1,) int64: scale-index boundaries, ACT_BITS fractional bits
    z_tables: TableSet
    y_tables: TableSet

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> "ExactParams":
        return cls(**cls.fields_from(t))

    def to_tensors(self) -> dict[str, Tensor]:
        """Inverse of :meth:`from_tensors`: the ``exact.*`` tensors, dtypes as exported."""
        out = {**self.hs.to_tensors("exact.h_s"), "exact.z_median": self.z_median,
               "exact.inv_hyper_gain": self.inv_hyper_gain, "exact.thresholds": self.thresholds}
        for name, tab in (("z_tables", self.z_tables), ("y_tables", self.y_tables)):
            out[f"exact.{name}.pmf"] = torch.from_numpy(tab.pmf)
            out[f"exact.{name}.length"] = torch.from_numpy(tab.lengths.astype(np.int32))
            out[f"exact.{name}.offset"] = torch.from_numpy(tab.offsets.astype(np.int32))
        return out

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        """The dataclass fields read from exported ``exact.*`` tensors (extended by subclasses)."""
        def tables(p: str) -> TableSet:
            return TableSet(t[f"{p}.pmf"].numpy(), t[f"{p}.length"].numpy(), t[f"{p}.offset"].numpy())
        return dict(hs=IntegerNet.from_tensors(t, "exact.h_s"), z_median=t["exact.z_median"],
                    inv_hyper_gain=t["exact.inv_hyper_gain"], thresholds=t["exact.thresholds"],
                    z_tables=tables("exact.z_tables"), y_tables=tables("exact.y_tables"))

    def hyper_params(self, z_sym: Tensor, q_milli: int, tile: int | None = None) -> tuple[Tensor, Tensor]:
        """z symbols (B, N, h, w) int64 -> (scales, means) of y, both in ACT_BITS fixed point.

        ``tile`` (a core side in z positions) runs the integer hyper-synthesis tile by tile
        with a halo covering its receptive field; integer arithmetic makes that bit-identical
        to the whole-latent result while bounding the float64 convolutions' buffers.
        """
        from liccodec import runtime

        scales, means = runtime.hyper_params(self.hs._exact, self.z_median.numpy(), self.inv_hyper_gain.numpy(),
                                             z_sym.to(torch.int64).numpy(), q_milli, tile)
        return torch.from_numpy(np.ascontiguousarray(scales)), torch.from_numpy(np.ascontiguousarray(means))

    def index(self, scales_q: Tensor) -> Tensor:
        """Scale-table index of each fixed-point scale (the nearest table entry in log scale)."""
        return torch.searchsorted(self.thresholds, scales_q.contiguous().view(-1)).view_as(scales_q)


class GainedHyperprior(LatentCodec):
    """Hyper analysis/synthesis, factorized prior for z, gain units for y and z."""

    def __init__(self, N: int, M: int, levels: int, init_log_gain: Tensor | None = None,
                 inference: bool = False, hyper: tuple[int, ...] = ()):
        super().__init__()
        self.N, self.M = N, M
        # h_s's two hidden widths: (M, 3M/2) as in Minnen et al. unless given
        self.hyper = tuple(hyper) or (M, M * 3 // 2)
        if len(self.hyper) != 2:
            raise ValueError(f"hyper: two hidden widths of h_s, not {list(hyper)}")
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.LeakyReLU(inplace=True),
            conv(N, N, 5, 2), nn.LeakyReLU(inplace=True),
            conv(N, N, 5, 2),
        )
        if not inference:  # coding uses the exported integer h_s and tables instead
            self._build_training_parts(N, M)
        # registered last: parameter order is part of the optimizer's checkpoint
        self.gain = GainUnits(levels, M, init_log_gain)
        self.hyper_gain = GainUnits(levels, N, below="linear")

    def _build_training_parts(self, N: int, M: int) -> None:
        from compressai.entropy_models import EntropyBottleneck

        # ReLU (not LeakyReLU) so that the exported integer network is a clip and a shift.
        h1, h2 = self.hyper
        self.h_s = nn.Sequential(
            deconv(N, h1, 5, 2), nn.ReLU(inplace=True),
            deconv(h1, h2, 5, 2), nn.ReLU(inplace=True),
            conv(h2, 2 * M, 3, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(N)

    # state that only training holds: coding reads the exported integer nets and tables
    training_only = ("h_s.", "entropy_bottleneck.")
    # the z prior's float parameters ship for warm starts and the CompressAI reference
    # comparison (liccodec.eval.reference); coding reads the exported tables
    reference_only = ("entropy_bottleneck.",)
    float16_export = ("h_a.",)
    # the gains are float and outside the exact path: they may vary from position to position
    spatial_quality = True

    @property
    def downsampling(self) -> int:
        """y positions per z position."""
        return Geometry.of(self.h_a).down

    def integer_nets(self) -> dict[str, nn.Sequential]:
        """The float networks that ship as exact integer networks, by export name."""
        return {"h_s": self.h_s}

    # ---- training hooks ----------------------------------------------------------------
    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.loss()

    def aux_parameters(self) -> list[nn.Parameter]:
        return [self.entropy_bottleneck.quantiles]

    @torch.no_grad()
    def refresh(self) -> None:
        """Set the z prior's quantiles (median and tails) to their exact values.

        The auxiliary loss alone moves them ~lr per step, far too slowly after a warm start
        or a big change of the prior; the median sets the rounding grid of z in training,
        so a lagging one would train h_s on a grid that coding does not use."""
        eb = self.entropy_bottleneck
        eb.quantiles.copy_(prior_quantiles(eb).to(eb.quantiles))

    def grow_rules(self, live: float = 0.0) -> dict[str, dict[str, object]]:
        # more channels of y: h_s's output is (scales, means), and the new channels' start at
        # zero (the scale clamped to SCALE_MIN, mean 0: a zero latent costs almost nothing).
        # h_a reads the new ones (zero at step 0) with its initial weights. A live start's new
        # channels are not zero: h_a reads them through zero weights (the default rule), and
        # their scales start at ``live``
        if live:
            return {"h_s.4": {"new_outputs": "zero", "chunks": 2, "new_bias": (live, 0.0)}}
        return {"h_a.0": {"new_inputs": "init"}, "h_s.4": {"new_outputs": "zero", "chunks": 2}}

    def level_tables(self) -> tuple[str, ...]:
        return ("gain.log_gain", "gain.log_inv_gain", "hyper_gain.log_gain", "hyper_gain.log_inv_gain")

    def z_medians(self) -> Tensor:
        return self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)

    def forward(self, y: Tensor, level: Tensor) -> LatentOut:
        g, ig = self.gain(level)
        hg, ihg = self.hyper_gain(level)
        y_g = y * g
        z_g = self.h_a(y_g) * hg
        with torch.autocast(y.device.type, enabled=False):
            z_g = z_g.float()
            med = self.z_medians()
            soft = _SOFT_ROUNDING.get()
            if soft is None:
                # the likelihood follows this codec's mode, not the prior module's: a prior
                # frozen in training (eval mode) still prices z with noise, so h_a sees z's bits
                _, z_lik = self.entropy_bottleneck(z_g, training=self.training)
                z_hat = (ste_round(z_g - med) + med) * ihg
            else:
                z_t = soft(z_g - med) + med
                z_lik = _prior_likelihood(self.entropy_bottleneck, z_t)
                z_hat = z_t * ihg
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        y_lik, y_hat_g = self._y_forward(y_g, scales, means)
        return LatentOut(y_hat_g * ig, {**self._y_likelihoods(y_lik), "z": z_lik})

    def _y_likelihoods(self, lik: Tensor) -> dict[str, Tensor]:
        """The likelihoods of y by name, the rate terms of training: one, ``"y"``. A codec may
        split them (``latent.wavelet3d``: its low and high bands), so that a recipe can weigh
        the parts' rates apart (``TrainConfig.latent_rate_weights``)."""
        return {"y": lik}

    def _y_forward(self, y_g: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        """Training: (likelihoods of y_g, y_g as the synthesis sees it), fp32."""
        with torch.autocast(y_g.device.type, enabled=False):
            return _quantize_y(y_g.float(), scales.float(), means.float(), self.training)

    # ---- export ------------------------------------------------------------------------
    def export_exact(self, scales: np.ndarray | None = None) -> dict[str, Tensor]:
        """Integer hyper-synthesis, fixed-point medians/gains and coding tables (export time only)."""
        scales = scale_table() if scales is None else scales
        out = {}
        for name, net in self.integer_nets().items():
            out.update(IntegerNet.from_float(net).to_tensors(f"exact.{name}"))
        eb = self.entropy_bottleneck
        q = prior_quantiles(eb)
        med = q[:, 0, 1]
        out["exact.z_median"] = torch.round(med * 2**ACT_BITS).to(torch.int64)
        ihg = self.hyper_gain.log_inv_gain.detach().double().exp().clamp(2.0**-8, 64.0)
        out["exact.inv_hyper_gain"] = torch.round(ihg * 2**GAIN_BITS).to(torch.int64)
        bounds = np.sqrt(scales[:-1] * scales[1:])
        out["exact.thresholds"] = torch.from_numpy(np.ceil(bounds * 2**ACT_BITS).astype(np.int64))
        pmf, length, offset = gaussian_tables(scales)
        out.update({"exact.y_tables.pmf": torch.from_numpy(pmf), "exact.y_tables.length": torch.from_numpy(length),
                    "exact.y_tables.offset": torch.from_numpy(offset)})
        out.update(_z_tables(eb, q))
        return out

    def reference_tensors(self) -> dict[str, Tensor]:
        """The z prior's float parameters (about 20k numbers) with its solved quantiles."""
        eb = self.entropy_bottleneck
        prior = {f"entropy_bottleneck.{n}": p.detach().float() for n, p in eb.named_parameters()}
        prior["entropy_bottleneck.quantiles"] = prior_quantiles(eb).float()
        return prior

    # ---- real coding (needs the exported exact parameters) ------------------------------
    exact_cls = ExactParams

    def _float_level(self, q_milli: int, batch: int, device: torch.device) -> Tensor:
        return torch.full((batch,), level_of_quality(q_milli), device=device)

    def gains(self, q_milli: int, qmap: np.ndarray | None, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(gain, inverse gain) of y: (B, M, 1, 1) at ``q_milli``, or (1, M, h, w) with the
        quality of each position from ``qmap`` ((h, w) thousandths). Each quality's vectors
        are computed exactly as for a uniform quality, so a uniform map gives the same numbers."""
        if qmap is None:
            return self.gain(self._float_level(q_milli, batch, device))
        qualities, index = np.unique(np.asarray(qmap, dtype=np.int64), return_inverse=True)
        g, ig = self.gain(torch.tensor([level_of_quality(int(q)) for q in qualities], device=device))
        at = torch.from_numpy(index.reshape(np.shape(qmap))).to(device)
        return (g[:, :, 0, 0][at].permute(2, 0, 1).unsqueeze(0), ig[:, :, 0, 0][at].permute(2, 0, 1).unsqueeze(0))

    @torch.no_grad()
    def encode(self, y: Tensor, q_milli: int, writer: StreamWriter, tile: int | None = None,
               qmap: np.ndarray | None = None) -> Tensor:
        """Code y (1, M, H/16, W/16) into ``writer``; returns the decoder's y_hat.

        ``tile`` (a core side in y positions, a multiple of 4) runs h_a and the integer
        hyper-synthesis tile by tile (``liccodec.tiling``); None runs them on the whole latent.
        ``qmap`` ((H/16, W/16) thousandths) gains each position of y at its own quality;
        ``q_milli`` then only sets the hyper-latent's gain.
        """
        ex = self._require_exact()
        level = self._float_level(q_milli, y.shape[0], y.device)
        if qmap is not None and tuple(np.shape(qmap)) != tuple(y.shape[-2:]):
            raise ValueError(f"quality map of {np.shape(qmap)} for y of {tuple(y.shape[-2:])}")
        g, ig = self.gains(q_milli, qmap, y.shape[0], y.device)
        hg, _ = self.hyper_gain(level)
        y_g = y.float() * g
        if tile is None:
            z_g = self.h_a(y_g.to(y.dtype))
        else:
            z_g = run_tiled(self.h_a, y_g.to(y.dtype), Geometry.of(self.h_a), tile)
        z_g = z_g.float() * hg
        med = (ex.z_median.double() / 2**ACT_BITS).view(1, -1, 1, 1)
        z_sym = torch.round(z_g.double().cpu() - med).clamp(-Z_LIMIT, Z_LIMIT).to(torch.int64)
        scales_q, means_q = ex.hyper_params(z_sym, q_milli, None if tile is None else max(1, tile // 4))
        chan = torch.arange(self.N).view(1, -1, 1, 1).expand_as(z_sym)
        writer.add(ex.z_tables, z_sym.numpy(), chan.numpy())
        y_sym, means_q = self._encode_y(ex, y_g.double().cpu(), scales_q, means_q, writer, tile)
        return self._y_hat(y_sym, means_q, tile).to(y.device) * ig

    def _encode_y(self, ex: ExactParams, y_g: Tensor, scales_q: Tensor, means_q: Tensor,
                  writer: StreamWriter, tile: int | None) -> tuple[Tensor, Tensor]:
        """Code y_g (float64) given the hyper-synthesis output into ``writer``; returns
        (y symbols, means in ACT_BITS fixed point), exactly what the decoder will rebuild."""
        y_sym = torch.round(y_g - means_q.double() / 2**ACT_BITS).to(torch.int64)
        writer.add(ex.y_tables, y_sym.numpy(), ex.index(scales_q).numpy())
        return y_sym, means_q

    @torch.no_grad()
    def decode_latents(self, streams: dict[str, bytes], z_hw: tuple[int, int], q_milli: int,
                       tile: int | None = None) -> tuple[Tensor, Tensor]:
        """Streams -> (y symbols, means in ACT_BITS fixed point): integers only.

        ``tile`` (y positions) only bounds memory: the result is bit-identical either way.
        """
        reader = reader_of(streams)
        y_sym, means_q = self._decode_ints(reader, z_hw, q_milli, tile)
        reader.finish()
        return y_sym, means_q

    def _decode_ints(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
                     tile: int | None) -> tuple[Tensor, Tensor]:
        ex = self._require_exact()
        h, w = z_hw
        # before anything grows with the declared size: can the stream hold z (every
        # channel's table used h*w times)? A header that claims a bigger image is a lie.
        reader.check_room(ex.z_tables, np.full(self.N, h * w))
        chan = torch.arange(self.N).view(1, -1, 1, 1).expand(1, self.N, h, w)
        z_sym = reader.take(ex.z_tables, chan.numpy())
        if np.abs(z_sym).max(initial=0) > Z_LIMIT:
            raise FormatError("hyper-latent value out of range")
        scales_q, means_q = ex.hyper_params(torch.from_numpy(z_sym).view(1, self.N, h, w), q_milli,
                                            None if tile is None else max(1, tile // 4))
        return self._decode_y(ex, reader, scales_q, means_q, tile)

    def _decode_y(self, ex: ExactParams, reader: StreamReader, scales_q: Tensor, means_q: Tensor,
                  tile: int | None) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`_encode_y`."""
        index = ex.index(scales_q)
        return torch.from_numpy(reader.take(ex.y_tables, index.numpy())).view_as(index), means_q

    @torch.no_grad()
    def decode(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
               tile: int | None = None, qmap: np.ndarray | None = None) -> Tensor:
        """Inverse of :meth:`encode`: -> y_hat (1, M, 4h, 4w) for z of size ``z_hw``."""
        if qmap is not None and tuple(np.shape(qmap)) != (self.downsampling * z_hw[0], self.downsampling * z_hw[1]):
            raise ValueError(f"quality map of {np.shape(qmap)} for z of {z_hw}")
        y_sym, means_q = self._decode_ints(reader, z_hw, q_milli, tile)
        _, ig = self.gains(q_milli, qmap, 1, self.gain.log_gain.device)
        return self._y_hat(y_sym, means_q, tile).to(ig.device) * ig

    def _y_hat(self, y_sym: Tensor, means_q: Tensor, tile: int | None) -> Tensor:
        """What the synthesis gets (gained domain, fp32) from the decoded integers."""
        return (y_sym.double() + means_q.double() / 2**ACT_BITS).float()


class SlicedHyperprior(GainedHyperprior):
    """:class:`GainedHyperprior` with y coded in ``slices`` equal groups of channels, each
    corrected by integer networks of width ``hidden``: what ``latent.channelwise`` and
    ``latent.wavelet`` share. ``slices`` and ``hidden`` are set before the hyperprior calls
    ``_build_training_parts``, where a subclass builds its slice networks."""

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, hyper: tuple[int, ...] = ()):
        if M % slices:
            raise ValueError(f"M={M} does not split into {slices} equal slices")
        self.slices, self.hidden = slices, hidden
        super().__init__(N, M, levels, init_log_gain, inference, hyper)


_SOFT_ROUNDING: ContextVar[Callable[[Tensor], Tensor] | None] = ContextVar("soft_rounding", default=None)


@contextmanager
def soft_rounding(fn: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Within the block, the training forward rounds y and z with ``fn`` (a differentiable
    stand-in for ``round``, e.g. ``liccodec.refine.GumbelAnnealing``) for both the rate and
    what the synthesis sees: encoder-side refinement's relaxation (``liccodec.refine``)."""
    token = _SOFT_ROUNDING.set(fn)
    try:
        yield
    finally:
        _SOFT_ROUNDING.reset(token)


def _prior_likelihood(eb: nn.Module, z: Tensor) -> Tensor:
    """The factorized prior's likelihood of z values already on (or near) the rounding grid,
    differentiable in z (the prior's own forward rounds or adds noise first)."""
    c = z.shape[1]
    values = z.transpose(0, 1).reshape(c, 1, -1)
    lik, _, _ = eb._likelihood(values)
    lik = eb.likelihood_lower_bound(lik)
    return lik.reshape(c, z.shape[0], *z.shape[2:]).transpose(0, 1)


def _quantize_y(y_g: Tensor, scales: Tensor, means: Tensor, training: bool) -> tuple[Tensor, Tensor]:
    """(likelihoods, what the synthesis sees): noise for the rate in training, rounding
    around the mean otherwise; straight-through rounding for the synthesis either way.
    Under :func:`soft_rounding`, its function rounds both."""
    note_gaussian(means, scales)  # for distillation (latent.base.record_gaussians); else a no-op
    soft = _SOFT_ROUNDING.get()
    if soft is not None:
        y_t = soft(y_g - means) + means
        return gaussian_likelihood(y_t, scales, means), y_t
    noisy = y_g + torch.empty_like(y_g).uniform_(-0.5, 0.5) if training else torch.round(y_g - means) + means
    return gaussian_likelihood(noisy, scales, means), ste_round(y_g - means) + means


@torch.no_grad()
def prior_quantiles(eb: nn.Module, iters: int = 60) -> Tensor:
    """(C, 1, 3) float64: where each channel's factorized-prior CDF reaches the lower tail
    mass, one half and the upper tail, solved by bisection.

    Training only approaches these through the auxiliary loss, which can lag far behind
    (a warm-started prior starts from +-10); the CDF is monotone, so bisection finds them
    to float precision in a few dozen evaluations, independent of how long aux trained.
    """
    target = eb.target.detach().double().view(1, 1, 3)  # logits of tail, 1/2, 1 - tail
    c = eb.quantiles.shape[0]
    dev = eb.quantiles.device
    lo = torch.full((c, 1, 3), -(2.0**15), dtype=torch.float64, device=dev)
    hi = torch.full((c, 1, 3), 2.0**15, dtype=torch.float64, device=dev)
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = eb._logits_cumulative(mid.float(), stop_gradient=True).double() > target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return (lo + hi) / 2


@torch.no_grad()
def _z_tables(eb: nn.Module, q: Tensor, tail: float = 1e-9) -> dict[str, Tensor]:
    """Per-channel pmfs of the factorized prior around each channel's (fixed-point) median.

    ``q`` (C, 1, 3): lower tail, median, upper tail (:func:`prior_quantiles`)."""
    med = q[:, 0, 1]
    lo = torch.ceil(med - q[:, 0, 0]).clamp(min=1).to(torch.int64)
    hi = torch.ceil(q[:, 0, 2] - med).clamp(min=1).to(torch.int64)
    length = lo + hi + 1
    width = int(length.max().item())
    medf = torch.round(med * 2**ACT_BITS) / 2**ACT_BITS
    samples = (torch.arange(width, dtype=torch.float64)[None, :] - lo[:, None] + medf[:, None]).float()
    lik, _, _ = eb._likelihood(samples.unsqueeze(1), stop_gradient=True)
    lik = lik[:, 0].double().clamp(min=0)
    keep = torch.arange(width)[None, :] < length[:, None]
    lik = torch.where(keep, lik, torch.zeros_like(lik))
    esc = (1.0 - lik.sum(1)).clamp(min=tail)
    pmf = torch.zeros(lik.shape[0], width + 1, dtype=torch.float64)
    pmf[:, :width] = lik
    pmf[torch.arange(lik.shape[0]), length] = esc
    return {"exact.z_tables.pmf": pmf.float(), "exact.z_tables.length": length.to(torch.int32),
            "exact.z_tables.offset": (-lo).to(torch.int32)}
