"""Wavelet-domain channel-wise entropy model (WeChARM): the hyperprior of
``latent.hyperprior`` with y quantized and coded after a one-level 2D Haar DWT, the low
band first, then the high bands conditioned on it, each group in channel slices.

Fu, Liang, Fang, Han, Liang, Zhang, "WeConvene: Learned Image Compression with Wavelet-Domain
Convolution and Entropy Model", ECCV 2024 (arXiv 2407.09983), section "WeChARM". Data flow
(gained domain; ``K`` = slices, ``c = M / K``; the DWT is ``nn.wavelet.dwt2``, orthonormal
Haar, bands LL, LH, HL, HH of M channels each at half y's resolution)::

    y_g --DWT--> W = (LL, LH, HL, HH)                                 (B, 4M, h/2, w/2)
    hyper-synthesis (scales, means of y, (B, M, h, w)) --band map--> (S, Mn)
        S  = sqrt(mean over each 2x2 block of max(scales, SCALE_MIN)^2)    (B, M, h/2, w/2)
        Mn = DWT(means)                                                (B, 4M, h/2, w/2)
    LF step i (channels i*c..(i+1)*c of LL):
        (d_s, d_m) = lf_i(S_i, Mn_i, LL_hat_0..i-1)
    HF step i (the same channels of LH, HL and HH, 3c):
        (d_s, d_m) = hf_i(S_i, Mn_i, LL_hat (all of it), HF_hat_0..i-1)
    scales = S_i (per band) + d_s    means = Mn_i + d_m
    W_sym = round(W - means)         W_hat = W_sym + means
    y_hat_g = IDWT(W_hat)  (optionally W_hat + 0.5 tanh(lrp(...)) first)  --> * inverse gain --> g_s

The 2K steps follow z in the one rANS stream, LF steps first. The band map is what the
hyperprior already says about W: for independent Gaussians over a 2x2 block, every
orthonormal Haar coefficient is a Gaussian with the DWT of the means as its mean and the
root mean square of the four scales as its scale. So an untrained WeChARM (zero
corrections) is the mean-scale hyperprior carried into the wavelet domain, the best start
the hyperprior alone gives; it is not the spatial hyperprior's rate, because coding the four
coefficients as independent drops their correlation when the four scales differ.

Exactness. The encoder takes the DWT of y_g in float64 before quantizing (it only chooses
symbols); the decoder inverts it on the dequantized bands in float (it only feeds g_s).
Everything that sets the coder's parameters is integer: the band map runs on the
fixed-point hyper output (sums, an exact integer square root, a rounding halving:
:func:`band_params_q`), and ``lf_i``/``hf_i`` are integer networks (``nn.integer``) that
see only integers, so the decoder rebuilds every scale index and mean bit-exactly.

Departures from the paper, all for the exact decoder or for warm starts:

* y keeps the 16x stride of the transforms it starts from, so W is at 1/32 of the image
  (the paper's model drops g_a's last stride so that W is at 1/16). ``h_a`` reads y and
  ``h_s`` predicts y's parameters, mapped into the wavelet domain as above (the paper's
  hyper networks read and predict the bands directly).
* ``lf_i``/``hf_i`` are the conv/ReLU stacks of ``latent.channelwise`` (no attention) and
  predict residual corrections whose last layer starts at zero.
* The HF steps slice the same channels of the three high bands together (the paper splits
  the 3M high-band channels in order).
* The residual prediction (``lrp``) reads the final means and ``W_hat``, works in the
  wavelet domain and feeds g_s only, as in ``latent.channelwise``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter
from liccodec.latent.hyperprior import SCALE_MIN, ExactParams, GainedHyperprior, SlicedHyperprior, _quantize_y
from liccodec.nn import correction_net, lower_bound
from liccodec.nn.integer import ACT_BITS, ACT_CLIP, IntegerNet
from liccodec.nn.wavelet import dwt2, idwt2
from liccodec.tiling import Geometry, axis_ops, run_tiled

HAAR = "haar"
#: the smallest scale of the band map, in ACT_BITS fixed point (SCALE_MIN = 0.11)
SCALE_MIN_Q = round(SCALE_MIN * 2**ACT_BITS)


# ---- the band map: the hyperprior's parameters of y as parameters of W ----------------------
def band_params(scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
    """Float (training): (B, M, h, w) scales and means of y -> (S (B, M, h/2, w/2), one scale
    for all four bands; Mn (B, 4M, h/2, w/2), the bands of the means)."""
    s = lower_bound(scales, SCALE_MIN)
    return torch.sqrt(F.avg_pool2d(s * s, 2)), dwt2(means, HAAR)


def isqrt(n: np.ndarray) -> np.ndarray:
    """floor(sqrt(n)) of int64 0 <= n < 2**53, exact: float64 holds n exactly and its square
    root is correctly rounded, so the estimate is off by at most one, which the two integer
    corrections remove."""
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    r -= (r * r > n).astype(np.int64)
    r += ((r + 1) * (r + 1) <= n).astype(np.int64)
    return r


def band_params_q(scales_q: np.ndarray, means_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`band_params` in ACT_BITS fixed point, integers only (int64 in, int64 out).

    S = round(sqrt(a^2 + b^2 + c^2 + d^2) / 2) over each 2x2 block (scales clipped to
    [SCALE_MIN_Q, ACT_CLIP], so the sum stays below 2**46); the mean bands are the Haar
    sums of ``nn.wavelet.dwt2`` ((a+b+c+d)/2, (c+d-a-b)/2, (b-a+d-c)/2, (a-b-c+d)/2 for
    a, b / c, d the block's top / bottom row), halved with rounding half up."""
    s = np.clip(scales_q.astype(np.int64), SCALE_MIN_Q, ACT_CLIP)
    sq = s * s
    S = (isqrt(sq[..., 0::2, 0::2] + sq[..., 0::2, 1::2] + sq[..., 1::2, 0::2] + sq[..., 1::2, 1::2]) + 1) >> 1
    m = means_q.astype(np.int64)
    a, b, c, d = m[..., 0::2, 0::2], m[..., 0::2, 1::2], m[..., 1::2, 0::2], m[..., 1::2, 1::2]
    bands = (a + b + c + d, c + d - a - b, b - a + d - c, a - b - c + d)
    return S, np.concatenate([(v + 1) >> 1 for v in bands], axis=1)


def coding_steps(M: int, slices: int) -> list[np.ndarray]:
    """Channels of W (band-major, 4M) coded by each step, in coding order: the K LF slices
    of LL, then the K HF slices (the same c channels of LH, HL and HH)."""
    c = M // slices
    lf = [np.arange(i * c, (i + 1) * c) for i in range(slices)]
    hf = [np.concatenate([b * M + np.arange(i * c, (i + 1) * c) for b in (1, 2, 3)]) for i in range(slices)]
    return lf + hf


def _inverse(steps: list[np.ndarray]) -> np.ndarray:
    """Where each channel of W sits in the steps' concatenation."""
    order = np.concatenate(steps)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return inv


class BandResidual(nn.Module):
    """Latent residual prediction in the wavelet domain: ``concat(means, W_hat)`` (B, 8M, h, w)
    -> ``W_hat + 0.5 tanh(r)`` (B, 4M, h, w) in fp32. LF step i's residual comes from its
    means and LL_hat_0..i, HF step i's from its means, all of LL_hat and HF_hat_0..i. Its
    last layers start at zero. A float network like the synthesis it feeds."""

    def __init__(self, M: int, slices: int, hidden: int):
        super().__init__()
        c = M // slices
        self.M, self.slices, self.c = M, slices, c
        self.lf = nn.ModuleList(correction_net((i + 2) * c, hidden, c) for i in range(slices))
        self.hf = nn.ModuleList(correction_net(3 * c + M + 3 * c * (i + 1), hidden, 3 * c) for i in range(slices))

    @cached_property
    def _steps(self) -> tuple[list[Tensor], Tensor]:
        steps = coding_steps(self.M, self.slices)
        return [torch.from_numpy(s) for s in steps], torch.from_numpy(_inverse(steps))

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """Every network has the same receptive field (``liccodec.tiling``)."""
        return axis_ops(self.lf[0])

    def forward(self, means_and_hat: Tensor) -> Tensor:
        steps, inv = self._steps
        steps = [s.to(means_and_hat.device) for s in steps]
        K, M4 = self.slices, 4 * self.M
        means, hat = means_and_hat[:, :M4], means_and_hat[:, M4:]
        ll = hat[:, :self.M]
        r = [net(torch.cat([means[:, steps[i]], ll[:, :(i + 1) * self.c]], dim=1)) for i, net in enumerate(self.lf)]
        r += [net(torch.cat([means[:, steps[K + i]], ll, *(hat[:, s] for s in steps[K:K + i + 1])], dim=1))
              for i, net in enumerate(self.hf)]
        with torch.autocast(means_and_hat.device.type, enabled=False):
            return hat.float() + 0.5 * torch.tanh(torch.cat(r, dim=1).float()[:, inv.to(hat.device)])


@dataclass
class WaveletExact(ExactParams):
    """The hyperprior's exact state plus the integer networks of the LF and HF steps."""

    lf: tuple[IntegerNet, ...]
    hf: tuple[IntegerNet, ...]

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        def nets(name: str) -> tuple[IntegerNet, ...]:
            out: list[IntegerNet] = []
            while f"exact.{name}.{len(out)}.0.weight" in t:
                out.append(IntegerNet.from_tensors(t, f"exact.{name}.{len(out)}"))
            return tuple(out)
        return {**super().fields_from(t), "lf": nets("lf"), "hf": nets("hf")}

    def to_tensors(self) -> dict[str, Tensor]:
        out = super().to_tensors()
        for name, nets in (("lf", self.lf), ("hf", self.hf)):
            for i, net in enumerate(nets):
                out.update(net.to_tensors(f"exact.{name}.{i}"))
        return out


class WaveletChannel(SlicedHyperprior):
    """:class:`SlicedHyperprior` with y coded as its Haar bands: LL in ``slices`` channel
    slices, then LH/HL/HH in ``slices`` slices conditioned on all of LL (module docstring)."""

    exact_cls = WaveletExact

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, lrp: bool = False):
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference)
        # a float network that decoding runs too, so it is built for inference as well
        self.wlrp = BandResidual(M, slices, hidden) if lrp else None

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        c, K = M // self.slices, self.slices
        self.lf = nn.ModuleList(correction_net((i + 2) * c, self.hidden, 2 * c) for i in range(K))
        self.hf = nn.ModuleList(correction_net(4 * c + M + 3 * c * i, self.hidden, 6 * c) for i in range(K))

    training_only = (*GainedHyperprior.training_only, "lf.", "hf.")

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), **{f"lf.{i}": net for i, net in enumerate(self.lf)},
                **{f"hf.{i}": net for i, net in enumerate(self.hf)}}

    @cached_property
    def steps(self) -> list[np.ndarray]:
        """Channels of W coded by each step, in coding order (:func:`coding_steps`)."""
        return coding_steps(self.M, self.slices)

    @cached_property
    def _inv(self) -> np.ndarray:
        return _inverse(self.steps)

    # ---- training ------------------------------------------------------------------------
    def _y_forward(self, y_g: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        """(likelihoods of W (B, 4M, h/2, w/2), y_g as the synthesis sees it), fp32."""
        K = self.slices
        with torch.autocast(y_g.device.type, enabled=False):
            W = dwt2(y_g.float(), HAAR)
            S, Mn = band_params(scales.float(), means.float())
        S4 = S.repeat(1, 4, 1, 1)
        steps = [torch.from_numpy(s).to(W.device) for s in self.steps]
        liks, hats, final_means, ll_hat = [], [], [], None
        for k, idx in enumerate(steps):
            if k < K:
                ctx = [S[:, idx], Mn[:, idx], *hats]
                net = self.lf[k]
            else:
                ctx = [S[:, steps[k - K]], Mn[:, idx], ll_hat, *hats[K:]]
                net = self.hf[k - K]
            d_s, d_m = net(torch.cat(ctx, dim=1)).chunk(2, dim=1)
            with torch.autocast(y_g.device.type, enabled=False):
                # add in fp32: under bf16 autocast a bf16 sum would round the means again
                final_means.append(Mn[:, idx] + d_m.float())
                lik, hat = _quantize_y(W[:, idx], S4[:, idx] + d_s.float(), final_means[-1], self.training)
            liks.append(lik)
            hats.append(hat)
            if k == K - 1:
                ll_hat = torch.cat(hats, dim=1)
        inv = torch.from_numpy(self._inv).to(W.device)
        W_hat = torch.cat(hats, dim=1)[:, inv]
        if self.wlrp is not None:
            W_hat = self.wlrp(torch.cat([torch.cat(final_means, dim=1)[:, inv], W_hat], dim=1))
        with torch.autocast(y_g.device.type, enabled=False):
            return torch.cat(liks, dim=1)[:, inv], idwt2(W_hat.float(), HAAR)

    # ---- exact coding --------------------------------------------------------------------
    def _check(self, ex: WaveletExact) -> None:
        c = self.M // self.slices
        outs = ([net.layers[-1].weight.shape[0] for net in ex.lf], [net.layers[-1].weight.shape[0] for net in ex.hf])
        if outs != ([2 * c] * self.slices, [6 * c] * self.slices):
            raise ValueError(f"the weights' band networks do not fit {self.slices} slices of M={self.M}")

    def _code_steps(self, ex: WaveletExact, scales_q: Tensor, means_q: Tensor, tile: int | None,
                    code: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> tuple[Tensor, Tensor]:
        """Run the 2K steps in order; ``code(k, index, means_q)`` encodes or decodes step k's
        channels of W and returns their symbols. Returns (W symbols, W means in ACT_BITS
        fixed point), (1, 4M, h/2, w/2) each, the same on both sides: each step reads only
        the band map and what was decoded before it. ``tile`` (y positions) runs the
        networks tile by tile at half that side, bit-identical to the whole."""
        self._check(ex)
        K, limit = self.slices, ACT_CLIP >> ACT_BITS
        S, Mn = band_params_q(scales_q.numpy(), means_q.numpy())
        S4 = np.concatenate([S] * 4, axis=1)
        t = None if tile is None else max(1, tile // 2)
        thresholds = ex.thresholds.numpy()
        syms, mq, hat_q = [], [], []
        for k, idx in enumerate(self.steps):
            if k < K:
                net, ctx = ex.lf[k]._exact, [S[:, idx], Mn[:, idx], *hat_q]
            else:
                net, ctx = ex.hf[k - K]._exact, [S[:, self.steps[k - K]], Mn[:, idx], *hat_q]
            x = np.concatenate(ctx, axis=1)
            d = net(x) if t is None else run_tiled(net, x, Geometry.of(net), t)
            n = len(idx)
            m = Mn[:, idx] + d[:, n:]
            sym = code(k, np.searchsorted(thresholds, S4[:, idx] + d[:, :n], side="left"), m)
            syms.append(sym)
            mq.append(m)
            # W_hat in fixed point for the next steps; symbols beyond what an activation can
            # hold are clipped first, so that no product leaves int64 whatever a file contains
            hat_q.append(np.clip(sym, -limit, limit) * (1 << ACT_BITS) + m)
        inv = self._inv
        return (torch.from_numpy(np.concatenate(syms, axis=1)[:, inv]),
                torch.from_numpy(np.concatenate(mq, axis=1)[:, inv]))

    def _encode_y(self, ex: WaveletExact, y_g: Tensor, scales_q: Tensor, means_q: Tensor,
                  writer: StreamWriter, tile: int | None) -> tuple[Tensor, Tensor]:
        W = dwt2(y_g.double(), HAAR).numpy()

        def encode(k: int, index: np.ndarray, m: np.ndarray) -> np.ndarray:
            sym = np.round(W[:, self.steps[k]] - m / 2**ACT_BITS).astype(np.int64)
            writer.add(ex.y_tables, sym, index)
            return sym
        return self._code_steps(ex, scales_q, means_q, tile, encode)

    def _decode_y(self, ex: WaveletExact, reader: StreamReader, scales_q: Tensor, means_q: Tensor,
                  tile: int | None) -> tuple[Tensor, Tensor]:
        def decode(k: int, index: np.ndarray, m: np.ndarray) -> np.ndarray:
            return np.asarray(reader.take(ex.y_tables, index)).reshape(index.shape)
        return self._code_steps(ex, scales_q, means_q, tile, decode)

    def _y_hat(self, y_sym: Tensor, means_q: Tensor, tile: int | None) -> Tensor:
        """y_hat_g (1, M, h, w), fp32: the dequantized bands (residual prediction added), IDWT'd."""
        W_hat = (y_sym.double() + means_q.double() / 2**ACT_BITS).float().to(self.gain.log_gain.device)
        if self.wlrp is not None:
            means = (means_q.double() / 2**ACT_BITS).float().to(W_hat.device)
            ctx = torch.cat([means, W_hat], dim=1)
            W_hat = (self.wlrp(ctx) if tile is None
                     else run_tiled(self.wlrp, ctx, Geometry.of(self.wlrp), max(1, tile // 2)))
        return idwt2(W_hat, HAAR)
