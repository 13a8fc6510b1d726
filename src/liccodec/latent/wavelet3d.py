"""3D wavelet-domain channel-wise entropy model (3DWeChARM): WeChARM (``latent.wavelet``)
with y's channel axis as a third wavelet axis. y is quantized and coded as its one-level 3D
Haar bands, the low band first, channel slices within.

Fu, Liang, Liang, Fang, Zhang, Han, "3DM-WeConvene: Learned Image Compression with 3D
Multi-Level Wavelet-Domain Convolution and Entropy Model", arXiv 2504.04658, 2025. Data flow
(gained domain; ``h = M / 2`` channel pairs, ``K`` = slices, ``c = h / K``; the DWT is
``nn.wavelet.dwt3``, orthonormal Haar over width, height and channel pairs ``(2j, 2j+1)``:
eight bands ``BANDS_3D`` = LLL, LLH, ..., HHH of h channels each, at half y's resolution)::

    y_g --DWT3--> W = (LLL, LLH, LHL, LHH, HLL, HLH, HHL, HHH)          (B, 4M, h/2, w/2)
    hyper-synthesis (scales, means of y, (B, M, h, w)) --band map--> (S, Mn)
        S  = sqrt(mean over each 2x2 block of a channel pair of max(scales, SCALE_MIN)^2)
                                                                       (B, M/2, h/2, w/2)
        Mn = DWT3(means)                                               (B, 4M, h/2, w/2)
    LF step i (channels i*c..(i+1)*c of LLL):
        (d_s, d_m) = band_i(S_i, Mn_i, LLL_hat_0..i-1)
    HF step i (the same c channels of each of the seven other bands, 7c, band order):
        (d_s, d_m) = band_{K+i}(S_i, Mn_i, LLL_hat (all of it), HF_hat_0..i-1)
    scales = S_i (every band) + d_s    means = Mn_i + d_m
    W_sym = round(W - means)           W_hat = W_sym + means
    y_hat_g = IDWT3(W_hat)  (optionally W_hat + 0.5 tanh(lrp(...)) first)  --> * inverse gain --> g_s

So the low band (LLL: low along width, height and channels, an eighth of the coefficients)
is coded first and is the prior of the high bands. ``lf_first = False`` is the ablation:
K steps, step i the c channels of all eight bands, each conditioned on the steps before it
(wavelet-domain channel slices without the LF/HF split). The steps follow z in the one rANS
stream (docs/format.md, "3D wavelet bands").

The band map is WeChARM's in 3D: for independent Gaussians over the eight values of a
2x2 block of a channel pair, every orthonormal 3D Haar coefficient is a Gaussian with the
DWT3 of the means as its mean and the root mean square of the eight scales as its scale.
So an untrained model (zero corrections) is the mean-scale hyperprior carried into the 3D
wavelet domain. Exactness is WeChARM's: the encoder takes the DWT in float64 before
quantizing, the decoder inverts it on the dequantized bands in float; the band map runs in
integers (``latent.wavelet.band_params_q`` with ``ndim = 3``: sums, an exact integer square
root, the 1/(2 sqrt 2) normalisation as a 30-bit fixed-point product with a rounding shift),
and the step networks ``band.k`` are integer networks that see only integers.

Training sees the rate of the two parts apart: the likelihoods are ``"y_lf"`` (LLL) and
``"y_hf"`` (the seven other bands), so that a recipe can weigh them
(``TrainConfig.latent_rate_weights``: the paper's two-step LF/HF training).

Departures from the paper (docs/models/weconv3d.md): the latent transform is one level of
Haar, not a multi-level 5/3 or 9/7 one, so that the band map stays a closed form over a 2x2x2
block; the hyper networks read and predict y, not the bands; the step networks are conv/ReLU
stacks predicting zero-started corrections, not attention blocks.
"""
from __future__ import annotations

import numpy as np
from torch import Tensor

from liccodec.latent.hyperprior import GainedHyperprior
from liccodec.latent.wavelet import WaveletChannel


def coding_steps_3d(M: int, slices: int, lf_first: bool = True) -> list[np.ndarray]:
    """Channels of W (band-major: band b, channel pair j at ``b * M/2 + j``) coded by each
    step, in coding order. ``lf_first``: the K slices of LLL, then K slices of the seven
    high bands (the same channel pairs of each, in band order); else K slices of all eight."""
    h = M // 2
    c = h // slices

    def part(i: int, bands: range) -> np.ndarray:
        return np.concatenate([b * h + np.arange(i * c, (i + 1) * c) for b in bands])
    if not lf_first:
        return [part(i, range(8)) for i in range(slices)]
    return [part(i, range(1)) for i in range(slices)] + [part(i, range(1, 8)) for i in range(slices)]


class Wavelet3DChannel(WaveletChannel):
    """:class:`~liccodec.latent.wavelet.WaveletChannel` on y's one-level 3D Haar bands, in the
    steps of :func:`coding_steps_3d` (module docstring). Its step networks are ``band.k``,
    k in coding order."""

    ndim = 3
    training_only = (*GainedHyperprior.training_only, "band.")

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int,
                 init_log_gain: Tensor | None = None, inference: bool = False, lrp: bool = False,
                 lf_first: bool = True):
        if M % 2 or (M // 2) % slices:
            raise ValueError(f"M={M} does not split into channel pairs in {slices} equal slices")
        self.lf_first = lf_first
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference, lrp)

    def coding_order(self) -> list[np.ndarray]:
        return coding_steps_3d(self.M, self.slices, self.lf_first)

    def step_groups(self) -> tuple[tuple[str, int], ...]:
        return (("band", len(self.steps)),)

    def _y_likelihoods(self, lik: Tensor) -> dict[str, Tensor]:
        """LLL's likelihoods and the seven high bands' apart (the first M/2 channels of W)."""
        h = self.M // 2
        return {"y_lf": lik[:, :h], "y_hf": lik[:, h:]}
