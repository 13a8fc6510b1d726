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

The machinery is written for any one-level orthonormal Haar layout and any list of coding
steps: ``latent.wavelet3d`` (3DWeChARM, arch ``weconv3d``) reuses it with the channel axis as
a third wavelet axis (``ndim = 3``) and its own steps. A step's networks read, in this
order, the band-map scale of the y channels its coefficients come from (one per channel,
shared by all bands), the band-map means of its coefficients and every coefficient coded
before it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter
from liccodec.latent.hyperprior import SCALE_MIN, ExactParams, GainedHyperprior, SlicedHyperprior, _quantize_y
from liccodec.nn import correction_net, lower_bound
from liccodec.nn.integer import ACT_BITS, ACT_CLIP, IntegerNet
from liccodec.nn.wavelet import dwt2, dwt3, idwt2, idwt3
from liccodec.tiling import Geometry, axis_ops, run_tiled

HAAR = "haar"
#: the smallest scale of the band map, in ACT_BITS fixed point (SCALE_MIN = 0.11)
SCALE_MIN_Q = round(SCALE_MIN * 2**ACT_BITS)


# ---- the band map: the hyperprior's parameters of y as parameters of W ----------------------
#: 1 / (2 sqrt 2), the 3D Haar normalisation, in fixed point for the integer band map
_INV_2SQRT2_BITS = 30
_INV_2SQRT2_Q = round(2**_INV_2SQRT2_BITS / (2 * math.sqrt(2)))


def _pool_pairs(x: Tensor, ndim: int) -> Tensor:
    """Mean over each 2x2 block (2D), or each 2x2 block of each channel pair (3D)."""
    if ndim == 3:
        b, c, h, w = x.shape
        x = x.view(b, c // 2, 2, h, w).mean(dim=2)
    return F.avg_pool2d(x, 2)


def band_params(scales: Tensor, means: Tensor, ndim: int = 2) -> tuple[Tensor, Tensor]:
    """Float (training): (B, M, h, w) scales and means of y -> (S, one scale for all bands of
    a block: (B, M, h/2, w/2), or (B, M/2, h/2, w/2) in 3D; Mn (B, 4M, h/2, w/2), the bands
    of the means, ``dwt2`` or ``dwt3`` order)."""
    s = lower_bound(scales, SCALE_MIN)
    return torch.sqrt(_pool_pairs(s * s, ndim)), (dwt2 if ndim == 2 else dwt3)(means, HAAR)


def isqrt(n: np.ndarray) -> np.ndarray:
    """floor(sqrt(n)) of int64 0 <= n < 2**53, exact: float64 holds n exactly and its square
    root is correctly rounded, so the estimate is off by at most one, which the two integer
    corrections remove."""
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    r -= (r * r > n).astype(np.int64)
    r += ((r + 1) * (r + 1) <= n).astype(np.int64)
    return r


def haar_sums(x: np.ndarray, ndim: int) -> list[np.ndarray]:
    """The unnormalised Haar bands of int64 (B, C, h, w), in ``dwt2`` (``dwt3``) band order:
    along width, then height (then channel pairs), ``(even + odd, odd - even)``."""
    bands = [x]
    for axis in (-1, -2, -3)[:ndim]:
        even = (Ellipsis, slice(0, None, 2), *[slice(None)] * (-1 - axis))
        odd = (Ellipsis, slice(1, None, 2), *[slice(None)] * (-1 - axis))
        bands = [half for b in bands for half in (b[even] + b[odd], b[odd] - b[even])]
    return bands


def band_params_q(scales_q: np.ndarray, means_q: np.ndarray, ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """:func:`band_params` in ACT_BITS fixed point, integers only (int64 in, int64 out).

    2D: S = round(sqrt(a^2 + b^2 + c^2 + d^2) / 2) over each 2x2 block (scales clipped to
    [SCALE_MIN_Q, ACT_CLIP], so the sum stays below 2**46); the mean bands are the Haar
    sums of :func:`haar_sums` ((a+b+c+d), (c+d-a-b), (b-a+d-c), (a-b-c+d) for a, b / c, d
    the block's top / bottom row), halved with rounding half up.

    3D: the same over the eight values of a 2x2 block of a channel pair: S =
    ``(isqrt(2 * sum of squares) + 2) >> 2`` (sqrt(sum / 8), the sum below 2**48), and each
    of the eight Haar sums times ``round(2**30 / (2 sqrt 2))``, shifted right by 30 with
    rounding half up (the sums stay below 2**26, the products below 2**56)."""
    s = np.clip(scales_q.astype(np.int64), SCALE_MIN_Q, ACT_CLIP)
    squares = haar_sums(s * s, ndim)[0]
    sums = haar_sums(means_q.astype(np.int64), ndim)
    if ndim == 2:
        return (isqrt(squares) + 1) >> 1, np.concatenate([(v + 1) >> 1 for v in sums], axis=1)
    half = 1 << (_INV_2SQRT2_BITS - 1)
    return ((isqrt(2 * squares) + 2) >> 2,
            np.concatenate([(v * _INV_2SQRT2_Q + half) >> _INV_2SQRT2_BITS for v in sums], axis=1))


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


def step_groups(groups: tuple[tuple[str, int], ...], make: Callable[[int], nn.Module]) -> dict[str, nn.ModuleList]:
    """One ``nn.ModuleList`` per named group of consecutive coding steps (``(name, count)``
    in coding order), ``make(k)`` building the network of step k: what a codec registers, so
    that its state names say which steps a network serves (``lf.0``, ``hf.3``, ``band.5``)."""
    out, k = {}, 0
    for name, n in groups:
        out[name] = nn.ModuleList(make(k + i) for i in range(n))
        k += n
    return out


class BandResidual(nn.Module):
    """Latent residual prediction in the wavelet domain: ``concat(means, W_hat)`` (B, 8M, h, w)
    -> ``W_hat + 0.5 tanh(r)`` (B, 4M, h, w) in fp32. Step k's residual comes from its
    means and the coefficients of steps 0..k (for WeChARM: LF step i from LL_hat_0..i, HF
    step i from all of LL_hat and HF_hat_0..i). Its last layers start at zero. A float
    network like the synthesis it feeds."""

    def __init__(self, steps: list[np.ndarray], groups: tuple[tuple[str, int], ...], hidden: int):
        super().__init__()
        self.groups = groups
        self.steps = [torch.from_numpy(s) for s in steps]
        self.inv = torch.from_numpy(_inverse(steps))
        seen = np.cumsum([len(s) for s in steps])
        for name, nets in step_groups(groups, lambda k: correction_net(len(steps[k]) + int(seen[k]), hidden,
                                                                        len(steps[k]))).items():
            setattr(self, name, nets)

    def nets(self) -> list[nn.Module]:
        return [net for name, _ in self.groups for net in getattr(self, name)]

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        """Every network has the same receptive field (``liccodec.tiling``)."""
        return axis_ops(self.nets()[0])

    def forward(self, means_and_hat: Tensor) -> Tensor:
        dev = means_and_hat.device
        steps = [s.to(dev) for s in self.steps]
        n = means_and_hat.shape[1] // 2
        means, hat = means_and_hat[:, :n], means_and_hat[:, n:]
        hats = [hat[:, s] for s in steps]
        r = [net(torch.cat([means[:, steps[k]], *hats[:k + 1]], dim=1)) for k, net in enumerate(self.nets())]
        with torch.autocast(dev.type, enabled=False):
            return hat.float() + 0.5 * torch.tanh(torch.cat(r, dim=1).float()[:, self.inv.to(dev)])


@dataclass
class WaveletExact(ExactParams):
    """The hyperprior's exact state plus the integer networks of the coding steps, by group
    (``exact.<group>.<i>.*``)."""

    nets: dict[str, tuple[IntegerNet, ...]]

    #: the step groups of every wavelet-domain codec (``latent.wavelet``, ``latent.wavelet3d``)
    GROUPS: ClassVar[tuple[str, ...]] = ("lf", "hf", "band")

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        nets: dict[str, tuple[IntegerNet, ...]] = {}
        for name in cls.GROUPS:
            group: list[IntegerNet] = []
            while f"exact.{name}.{len(group)}.0.weight" in t:
                group.append(IntegerNet.from_tensors(t, f"exact.{name}.{len(group)}"))
            if group:
                nets[name] = tuple(group)
        return {**super().fields_from(t), "nets": nets}

    def to_tensors(self) -> dict[str, Tensor]:
        out = super().to_tensors()
        for name, nets in self.nets.items():
            for i, net in enumerate(nets):
                out.update(net.to_tensors(f"exact.{name}.{i}"))
        return out


class WaveletChannel(SlicedHyperprior):
    """:class:`SlicedHyperprior` with y coded as its Haar bands: LL in ``slices`` channel
    slices, then LH/HL/HH in ``slices`` slices conditioned on all of LL (module docstring).

    Subclasses change the layout through :attr:`ndim` (2: bands over height and width; 3:
    also over channel pairs), :meth:`coding_order` and :meth:`step_groups`."""

    exact_cls = WaveletExact
    ndim: ClassVar[int] = 2

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, lrp: bool = False):
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference)
        # a float network that decoding runs too, so it is built for inference as well
        self.wlrp = BandResidual(self.steps, self.step_groups(), hidden) if lrp else None

    # ---- the layout: which coefficients each step codes, and its networks' names ----------
    def coding_order(self) -> list[np.ndarray]:
        """Channels of W coded by each step, in coding order (:func:`coding_steps`)."""
        return coding_steps(self.M, self.slices)

    def step_groups(self) -> tuple[tuple[str, int], ...]:
        """(name, number of steps) of the networks, in coding order."""
        return (("lf", self.slices), ("hf", self.slices))

    @cached_property
    def steps(self) -> list[np.ndarray]:
        return self.coding_order()

    @cached_property
    def _inv(self) -> np.ndarray:
        return _inverse(self.steps)

    @cached_property
    def _scale_channels(self) -> list[np.ndarray]:
        """Per step, the channels of the band-map scale S its coefficients use (S has one
        channel per y channel, per channel pair in 3D; every band shares it)."""
        n = self.M if self.ndim == 2 else self.M // 2
        return [np.unique(idx % n) for idx in self.steps]

    def _dwt(self, y: Tensor) -> Tensor:
        return (dwt2 if self.ndim == 2 else dwt3)(y, HAAR)

    def _idwt(self, W: Tensor) -> Tensor:
        return (idwt2 if self.ndim == 2 else idwt3)(W, HAAR)

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        steps, scale_channels = self.steps, self._scale_channels
        seen = np.cumsum([0] + [len(s) for s in steps])
        for name, nets in step_groups(self.step_groups(), lambda k: correction_net(
                len(scale_channels[k]) + len(steps[k]) + int(seen[k]), self.hidden, 2 * len(steps[k]))).items():
            setattr(self, name, nets)

    # the prefixes of the step groups' networks (:meth:`step_groups`)
    training_only = (*GainedHyperprior.training_only, "lf.", "hf.")

    def _nets(self) -> list[nn.Module]:
        return [net for name, _ in self.step_groups() for net in getattr(self, name)]

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), **{f"{name}.{i}": net for name, _ in self.step_groups()
                                             for i, net in enumerate(getattr(self, name))}}

    # ---- training ------------------------------------------------------------------------
    def _y_forward(self, y_g: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        """(likelihoods of W (B, 4M, h/2, w/2), y_g as the synthesis sees it), fp32."""
        with torch.autocast(y_g.device.type, enabled=False):
            W = self._dwt(y_g.float())
            S, Mn = band_params(scales.float(), means.float(), self.ndim)
        dev = W.device
        liks, hats, final_means = [], [], []
        for idx, s_idx, net in zip(self.steps, self._scale_channels, self._nets()):
            idx, s_idx = torch.from_numpy(idx).to(dev), torch.from_numpy(s_idx).to(dev)
            d_s, d_m = net(torch.cat([S[:, s_idx], Mn[:, idx], *hats], dim=1)).chunk(2, dim=1)
            with torch.autocast(y_g.device.type, enabled=False):
                # add in fp32: under bf16 autocast a bf16 sum would round the means again
                final_means.append(Mn[:, idx] + d_m.float())
                scale = S[:, idx % S.shape[1]] + d_s.float()
                lik, hat = _quantize_y(W[:, idx], scale, final_means[-1], self.training)
            liks.append(lik)
            hats.append(hat)
        inv = torch.from_numpy(self._inv).to(dev)
        W_hat = torch.cat(hats, dim=1)[:, inv]
        if self.wlrp is not None:
            W_hat = self.wlrp(torch.cat([torch.cat(final_means, dim=1)[:, inv], W_hat], dim=1))
        with torch.autocast(y_g.device.type, enabled=False):
            return torch.cat(liks, dim=1)[:, inv], self._idwt(W_hat.float())

    # ---- exact coding --------------------------------------------------------------------
    def _exact_nets(self, ex: WaveletExact) -> list[IntegerNet]:
        """The exact step networks in coding order, checked against the layout."""
        nets = [net for name, _ in self.step_groups() for net in ex.nets.get(name, ())]
        outs = [net.layers[-1].weight.shape[0] for net in nets]
        if outs != [2 * len(idx) for idx in self.steps]:
            raise ValueError(f"the weights' band networks do not fit {self.slices} slices of M={self.M}")
        return nets

    def _code_steps(self, ex: WaveletExact, scales_q: Tensor, means_q: Tensor, tile: int | None,
                    code: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> tuple[Tensor, Tensor]:
        """Run the steps in order; ``code(k, index, means_q)`` encodes or decodes step k's
        channels of W and returns their symbols. Returns (W symbols, W means in ACT_BITS
        fixed point), (1, 4M, h/2, w/2) each, the same on both sides: each step reads only
        the band map and what was decoded before it. ``tile`` (y positions) runs the
        networks tile by tile at half that side, bit-identical to the whole."""
        nets = self._exact_nets(ex)
        limit = ACT_CLIP >> ACT_BITS
        S, Mn = band_params_q(scales_q.numpy(), means_q.numpy(), self.ndim)
        t = None if tile is None else max(1, tile // 2)
        thresholds = ex.thresholds.numpy()
        syms, mq, hat_q = [], [], []
        for k, (idx, s_idx, net) in enumerate(zip(self.steps, self._scale_channels, nets)):
            x = np.concatenate([S[:, s_idx], Mn[:, idx], *hat_q], axis=1)
            d = net._exact(x) if t is None else run_tiled(net._exact, x, Geometry.of(net._exact), t)
            n = len(idx)
            m = Mn[:, idx] + d[:, n:]
            sym = code(k, np.searchsorted(thresholds, S[:, idx % S.shape[1]] + d[:, :n], side="left"), m)
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
        W = self._dwt(y_g.double()).numpy()

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
        return self._idwt(W_hat)
