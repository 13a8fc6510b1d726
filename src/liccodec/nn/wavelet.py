"""Discrete wavelet transforms by lifting: differentiable torch functions and layers.

Daubechies & Sweldens, "Factoring wavelet transforms into lifting steps", J. Fourier Anal.
Appl. 4(3), 1998: a two-channel filter bank is a short chain of *lifting steps*, each adding
a filtered copy of one polyphase half of the signal (even samples ``s``, odd samples ``d``)
to the other half. A step is undone by subtracting the same quantity, so the inverse is
exact by construction: up to float rounding for the float wavelets, bit-exact for the
integer 5/3, whose steps round.

Wavelets (:data:`WAVELETS`), written for ``s[n] = x[2n]``, ``d[n] = x[2n+1]``:

* ``haar``: ``d -= s; s += d/2``.
* ``legall53``: LeGall 5/3, ``d[n] -= (s[n] + s[n+1])/2; s[n] += (d[n-1] + d[n])/4``.
* ``cdf97``: Cohen-Daubechies-Feauveau 9/7, the JPEG 2000 irreversible filter: two
  predict/update pairs with the coefficients ``ALPHA, BETA, GAMMA, DELTA`` below.
* ``legall53-int``: the JPEG 2000 reversible 5/3 on int64 tensors,
  ``d[n] -= floor((s[n] + s[n+1])/2); s[n] += floor((d[n-1] + d[n] + 2)/4)``, unscaled.

Normalisation. After lifting, the float wavelets multiply ``s`` by a gain ``g`` and divide
``d`` by it (``g = sqrt(2)`` for Haar and 5/3, ``K97`` for 9/7), so that every low-pass
filter has gain sqrt(2) at DC and every high-pass filter gain sqrt(2) at Nyquist. Haar is
then orthonormal; 5/3 and 9/7 are biorthogonal (9/7 nearly orthonormal). Consequences: in
2D the LL band of a constant image ``c`` is ``2c`` (``2*sqrt(2)*c`` for LLL in 3D), and
bands at every level are on the same scale as the image. The integer 5/3 is not scaled
(LL of ``c`` is ``c``), as in JPEG 2000.

Boundaries and lengths. A signal of length N is extended by whole-sample symmetry,
``x[-i] = x[i]`` and ``x[N-1+i] = x[N-1-i]``, as JPEG 2000 does for a signal that starts at
an even index. In the polyphase halves that is ``s[N/2] = s[N/2-1]`` and ``d[-1] = d[0]``,
and every lifting step keeps the extension symmetric, so no border needs special care and
the inverse is exact for **any even N >= 2**. Odd lengths raise ``ValueError`` (pad first);
``levels`` levels need lengths divisible by ``2**levels``.

Layouts.

* 1D, :func:`dwt` along a chosen dim: ``(low, high)``, each half as long.
* 2D, :func:`dwt2`: separable, rows then columns, i.e. first along the width (dim -1), then
  along the height (dim -2). A band is named by its filters in that order, so ``HL`` is
  high-pass along the width and low-pass along the height (vertical edges), as in JPEG 2000.
  ``(..., C, H, W) -> (..., 4C, H/2, W/2)``, subband-major: channels ``k*C .. k*C + C - 1``
  hold band ``BANDS_2D[k]`` (LL, LH, HL, HH) of the C input channels; ``y[:, :C]`` is LL.
* 3D, :func:`dwt3`: the channel axis (dim -3) is a third axis, filtered after width and
  height; C must be even. ``(..., C, H, W) -> (..., 4C, H/2, W/2)``: 8 bands of C/2
  channels in the order ``BANDS_3D`` (letters: width, height, channel), LLL first.
* Several levels, :func:`wavedec2` / :func:`wavedec3`: recurse on LL (LLL) and return a
  :class:`Pyramid`, which :func:`waverec` inverts.

Precision. Lifting is elementwise additions and multiplications, which autocast leaves
alone: the transform runs in its input's dtype. Under bf16 autocast a float32 tensor stays
float32, but a bf16 tensor (say, a convolution's output under autocast) would be lifted in
bf16, with relative errors near 1e-2. Pass ``x.float()``, or build the layers with
``compute_dtype=torch.float32``, to force fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# CDF 9/7 lifting coefficients and scaling (Daubechies & Sweldens 1998), as in JPEG 2000.
ALPHA = -1.586134342
BETA = -0.05298011854
GAMMA = 0.8829110762
DELTA = 0.4435068522
K97 = 1.149604398

#: Band order of :func:`dwt2`; letters are the filters along width, then height.
BANDS_2D = ("LL", "LH", "HL", "HH")
#: Band order of :func:`dwt3`; letters are the filters along width, height, then channels.
BANDS_3D = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")


@dataclass(frozen=True)
class Step:
    """One lifting step.

    A predict step (``predict=True``) adds to ``d[n]`` a multiple of ``s[n] + s[n+1]``; an
    update step adds to ``s[n]`` a multiple of ``d[n-1] + d[n]``. With ``taps=1`` the sum
    is the single sample ``s[n]`` (``d[n]``). Float wavelets add ``coef * sum``; integer
    wavelets add ``coef * floor((sum + offset) / 2**shift)`` with ``coef`` = +-1.
    """

    predict: bool
    coef: float
    taps: int = 2
    offset: int = 0
    shift: int = 0


@dataclass(frozen=True)
class Wavelet:
    """A lifting factorisation: ``steps``, then ``s *= gain``, ``d /= gain``."""

    name: str
    steps: tuple[Step, ...]
    gain: float
    integer: bool = False

    def analysis_op(self) -> tuple[bool, int, int, int]:
        """One level of analysis along one axis as the strided convolution
        ``(False, kernel, 2, padding)`` whose window covers what band position ``n`` reads,
        for both bands (``liccodec.tiling``)."""
        s, d = (0, 0), (1, 1)  # inputs read by s[n] and d[n], relative to 2n
        for st in self.steps:
            reach = 2 if st.taps == 2 else 0
            if st.predict:
                d = (min(d[0], s[0]), max(d[1], s[1] + reach))
            else:
                s = (min(s[0], d[0] - reach), max(s[1], d[1]))
        lo, hi = min(s[0], d[0]), max(s[1], d[1])
        return (False, hi - lo + 1, 2, -lo)

    def synthesis_op(self) -> tuple[bool, int, int, int]:
        """One level of synthesis along one axis as the transposed convolution
        ``(True, kernel, 2, padding)`` through which output ``o`` receives band position
        ``i`` for ``o - 2i`` in ``-padding .. kernel - 1 - padding``."""
        s, d = (0, 0), (0, 0)  # band positions read by x[2n] and x[2n+1], relative to n
        for st in reversed(self.steps):
            reach = 1 if st.taps == 2 else 0
            if st.predict:
                d = (min(d[0], s[0]), max(d[1], s[1] + reach))
            else:
                s = (min(s[0], d[0] - reach), max(s[1], d[1]))
        lo = min(-2 * s[1], 1 - 2 * d[1])
        hi = max(-2 * s[0], 1 - 2 * d[0])
        return (True, hi - lo + 1, 2, -lo)


WAVELETS: dict[str, Wavelet] = {w.name: w for w in (
    Wavelet("haar", (Step(True, -1.0, taps=1), Step(False, 0.5, taps=1)), math.sqrt(2)),
    Wavelet("legall53", (Step(True, -0.5), Step(False, 0.25)), math.sqrt(2)),
    Wavelet("cdf97", (Step(True, ALPHA), Step(False, BETA), Step(True, GAMMA), Step(False, DELTA)), K97),
    Wavelet("legall53-int", (Step(True, -1, shift=1), Step(False, 1, offset=2, shift=2)), 1.0, integer=True),
)}


def get_wavelet(wavelet: str | Wavelet) -> Wavelet:
    if isinstance(wavelet, Wavelet):
        return wavelet
    try:
        return WAVELETS[wavelet]
    except KeyError:
        raise ValueError(f"unknown wavelet {wavelet!r}; known: {', '.join(WAVELETS)}") from None


def _check_dtype(x: Tensor, w: Wavelet, where: str) -> None:
    if w.integer and x.dtype != torch.int64:
        raise TypeError(f"{where}: the {w.name} wavelet works on int64 tensors, got {x.dtype}")
    if not w.integer and not x.is_floating_point():
        raise TypeError(f"{where}: the {w.name} wavelet needs a floating-point tensor, got {x.dtype} "
                        "(legall53-int transforms integers)")


def _check_lengths(x: Tensor, dims: dict[str, int], levels: int, where: str, min_dims: int = 3) -> None:
    """Every named dim must be a positive multiple of ``2**levels``."""
    if x.dim() < min_dims:
        raise ValueError(f"{where}: expected a tensor with dims (..., C, H, W), got shape {tuple(x.shape)}")
    m = 1 << levels
    for name, dim in dims.items():
        n = x.shape[dim]
        if n == 0 or n % m:
            need = "an even length" if levels == 1 else f"a length divisible by 2**{levels} = {m}"
            raise ValueError(f"{where}: {name} is {n}, but {levels} level(s) of the wavelet transform need "
                             f"{need} (a positive even length at every level); pad the input")


def _pair_sum(t: Tensor, taps: int, ahead: bool) -> Tensor:
    """``t[n] + t[n+1]`` (ahead) or ``t[n-1] + t[n]`` along the last dim, with the symmetric
    extension ``t[len] = t[len-1]``, ``t[-1] = t[0]``; just ``t[n]`` for one tap."""
    if taps == 1:
        return t
    if ahead:
        return t + torch.cat([t[..., 1:], t[..., -1:]], dim=-1)
    return t + torch.cat([t[..., :1], t[..., :-1]], dim=-1)


def _lift(w: Wavelet, st: Step, target: Tensor, source: Tensor, sign: int) -> Tensor:
    total = _pair_sum(source, st.taps, ahead=st.predict)
    if w.integer:
        lifted = (total + st.offset) >> st.shift
        return target + lifted if st.coef * sign > 0 else target - lifted
    return target + (sign * st.coef) * total


def _analysis_last(x: Tensor, w: Wavelet) -> tuple[Tensor, Tensor]:
    s, d = x[..., 0::2], x[..., 1::2]
    for st in w.steps:
        if st.predict:
            d = _lift(w, st, d, s, 1)
        else:
            s = _lift(w, st, s, d, 1)
    if w.gain != 1:
        s, d = s * w.gain, d / w.gain
    return s, d


def _synthesis_last(s: Tensor, d: Tensor, w: Wavelet) -> Tensor:
    if w.gain != 1:
        s, d = s / w.gain, d * w.gain
    for st in reversed(w.steps):
        if st.predict:
            d = _lift(w, st, d, s, -1)
        else:
            s = _lift(w, st, s, d, -1)
    return torch.stack([s, d], dim=-1).flatten(-2)


def _analysis(x: Tensor, w: Wavelet, dims: tuple[int, ...]) -> list[Tensor]:
    """Bands in binary order, the first dim's filter being the most significant letter."""
    bands = [x]
    for dim in dims:
        bands = [half.movedim(-1, dim) for b in bands for half in _analysis_last(b.movedim(dim, -1), w)]
    return bands


def _synthesis(bands: list[Tensor], w: Wavelet, dims: tuple[int, ...]) -> Tensor:
    for dim in reversed(dims):
        bands = [_synthesis_last(lo.movedim(dim, -1), hi.movedim(dim, -1), w).movedim(-1, dim)
                 for lo, hi in zip(bands[0::2], bands[1::2])]
    return bands[0]


def dwt(x: Tensor, wavelet: str | Wavelet, dim: int = -1) -> tuple[Tensor, Tensor]:
    """One level along ``dim`` (even length): ``(low, high)``, each half as long."""
    w = get_wavelet(wavelet)
    _check_dtype(x, w, "dwt")
    _check_lengths(x, {f"dim {dim}": dim}, 1, "dwt", min_dims=1)
    lo, hi = _analysis(x, w, (dim,))
    return lo, hi


def idwt(low: Tensor, high: Tensor, wavelet: str | Wavelet, dim: int = -1) -> Tensor:
    """Inverse of :func:`dwt`."""
    w = get_wavelet(wavelet)
    _check_dtype(low, w, "idwt")
    _check_dtype(high, w, "idwt")
    if low.shape != high.shape:
        raise ValueError(f"idwt: low {tuple(low.shape)} and high {tuple(high.shape)} bands differ in shape")
    return _synthesis([low, high], w, (dim,))


_DIMS_2D = (-1, -2)
_DIMS_3D = (-1, -2, -3)


def dwt2(x: Tensor, wavelet: str | Wavelet) -> Tensor:
    """One 2D level: ``(..., C, H, W) -> (..., 4C, H/2, W/2)``, bands ``BANDS_2D``
    subband-major (``y[..., :C, :, :]`` is LL). H and W must be even."""
    w = get_wavelet(wavelet)
    _check_dtype(x, w, "dwt2")
    _check_lengths(x, {"height": -2, "width": -1}, 1, "dwt2")
    return torch.cat(_analysis(x, w, _DIMS_2D), dim=-3)


def idwt2(y: Tensor, wavelet: str | Wavelet) -> Tensor:
    """Inverse of :func:`dwt2`: ``(..., 4C, h, w) -> (..., C, 2h, 2w)``."""
    w = get_wavelet(wavelet)
    _check_dtype(y, w, "idwt2")
    _check_bands(y, 4, "idwt2")
    return _synthesis(list(y.chunk(4, dim=-3)), w, _DIMS_2D)


def dwt3(x: Tensor, wavelet: str | Wavelet) -> Tensor:
    """One 3D level over (channels, height, width): ``(..., C, H, W) -> (..., 4C, H/2, W/2)``,
    8 bands of C/2 channels in the order ``BANDS_3D`` (LLL first). C, H, W must be even."""
    w = get_wavelet(wavelet)
    _check_dtype(x, w, "dwt3")
    _check_lengths(x, {"channels": -3, "height": -2, "width": -1}, 1, "dwt3")
    return torch.cat(_analysis(x, w, _DIMS_3D), dim=-3)


def idwt3(y: Tensor, wavelet: str | Wavelet) -> Tensor:
    """Inverse of :func:`dwt3`: ``(..., 4C, h, w) -> (..., C, 2h, 2w)``."""
    w = get_wavelet(wavelet)
    _check_dtype(y, w, "idwt3")
    _check_bands(y, 8, "idwt3")
    return _synthesis(list(y.chunk(8, dim=-3)), w, _DIMS_3D)


def _check_bands(y: Tensor, bands: int, where: str) -> None:
    if y.dim() < 3 or y.shape[-3] == 0 or y.shape[-3] % bands:
        raise ValueError(f"{where}: expected (..., {bands}*k, h, w) stacked bands, got shape {tuple(y.shape)}: "
                         f"the channel count must be a positive multiple of {bands}")


@dataclass(frozen=True, eq=False)
class Pyramid:
    """A multi-level decomposition (:func:`wavedec2`, :func:`wavedec3`).

    ``low`` is the coarsest LL (LLL) band; ``highs[i]`` holds the other bands of level
    ``i + 1`` (finest first), stacked subband-major like :func:`dwt2` / :func:`dwt3` without
    their first band: LH, HL, HH (3 x C channels) in 2D, LLH .. HHH (7 x C_i channels,
    ``C_i = C / 2**(i+1)``) in 3D. ``torch.cat([low, highs[0]], -3)`` of a one-level
    pyramid is ``dwt2(x)`` (``dwt3(x)``).
    """

    low: Tensor
    highs: tuple[Tensor, ...]
    wavelet: Wavelet
    ndim: int  # 2 or 3

    @property
    def levels(self) -> int:
        return len(self.highs)


def _wavedec(x: Tensor, wavelet: str | Wavelet, levels: int, ndim: int) -> Pyramid:
    where = f"wavedec{ndim}"
    w = get_wavelet(wavelet)
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"{where}: levels must be a positive integer, got {levels!r}")
    _check_dtype(x, w, where)
    dims = {"height": -2, "width": -1} if ndim == 2 else {"channels": -3, "height": -2, "width": -1}
    _check_lengths(x, dims, levels, where)
    one = dwt2 if ndim == 2 else dwt3
    highs = []
    low = x
    for _ in range(levels):
        y = one(low, w)
        c = low.shape[-3] if ndim == 2 else low.shape[-3] // 2
        low = y[..., :c, :, :]
        highs.append(y[..., c:, :, :])
    return Pyramid(low, tuple(highs), w, ndim)


def wavedec2(x: Tensor, wavelet: str | Wavelet, levels: int) -> Pyramid:
    """``levels`` 2D levels, recursing on LL. H and W must be divisible by ``2**levels``."""
    return _wavedec(x, wavelet, levels, 2)


def wavedec3(x: Tensor, wavelet: str | Wavelet, levels: int) -> Pyramid:
    """``levels`` 3D levels, recursing on LLL. C, H and W must be divisible by ``2**levels``."""
    return _wavedec(x, wavelet, levels, 3)


def waverec(p: Pyramid) -> Tensor:
    """Inverse of :func:`wavedec2` / :func:`wavedec3`, with the pyramid's own wavelet."""
    if p.ndim not in (2, 3):
        raise ValueError(f"waverec: a pyramid is 2D or 3D, got ndim={p.ndim}")
    one, per_band = (idwt2, 3) if p.ndim == 2 else (idwt3, 7)
    low = p.low
    for level in range(p.levels, 0, -1):
        high = p.highs[level - 1]
        want = (*low.shape[:-3], per_band * low.shape[-3], *low.shape[-2:])
        if tuple(high.shape) != want:
            raise ValueError(f"waverec: level {level} bands have shape {tuple(high.shape)}, expected {want} "
                             f"to go with a low band of shape {tuple(low.shape)}")
        low = one(torch.cat([low, high], dim=-3), p.wavelet)
    return low


class _Layer(nn.Module):
    def __init__(self, wavelet: str | Wavelet, compute_dtype: torch.dtype | None = None):
        super().__init__()
        self.wavelet = get_wavelet(wavelet)
        self.compute_dtype = compute_dtype

    def _cast(self, x: Tensor) -> Tensor:
        return x if self.compute_dtype is None else x.to(self.compute_dtype)

    def extra_repr(self) -> str:
        extra = "" if self.compute_dtype is None else f", compute_dtype={self.compute_dtype}"
        return f"{self.wavelet.name!r}{extra}"


class DWT2d(_Layer):
    """One level of :func:`dwt2` as a layer: ``(N, C, H, W) -> (N, 4C, H/2, W/2)``.

    ``compute_dtype`` (e.g. ``torch.float32`` under bf16 autocast) casts the input, and so
    the output, to that dtype; ``None`` keeps the input's.

    Tiling (``liccodec.tiling``): along each axis band position ``n`` reads a window of
    inputs around ``2n`` of the size of the longer analysis filter (9 for 9/7: ``2n-4 ..
    2n+4`` for the low band, ``2n-2 .. 2n+4`` for the high band; 5 for 5/3, 2 for Haar).
    :meth:`axis_ops` declares that window as a stride-2 convolution, exact for the low band
    and a superset for the high band. The symmetric extension is no obstacle: at an image
    border the tile extends like the whole image, and the halo keeps an inner tile border
    away from every kept output. So a tiled DWT equals the whole-image one (bit-exactly for
    the integer 5/3). Several levels (:func:`wavedec2`) give bands at several resolutions,
    which is not one chain output; tile each level instead. A ``DWT -> conv -> IDWT`` block
    has net stride 1, which ``Geometry`` does not compose from a down- and an upsampling
    part: such a block declares its own window as one stride-1 op.
    """

    def forward(self, x: Tensor) -> Tensor:
        return dwt2(self._cast(x), self.wavelet)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [self.wavelet.analysis_op()]


class IDWT2d(_Layer):
    """:func:`idwt2` as a layer: ``(N, 4C, h, w) -> (N, C, 2h, 2w)``; ``compute_dtype`` as for
    :class:`DWT2d`. Tiles as the transposed convolution :meth:`axis_ops` (kernel = the
    longer synthesis filter: 9 for 9/7, 5 for 5/3, 2 for Haar), see :class:`DWT2d`."""

    def forward(self, y: Tensor) -> Tensor:
        return idwt2(self._cast(y), self.wavelet)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [self.wavelet.synthesis_op()]


class DWT3d(_Layer):
    """One level of :func:`dwt3` as a layer (channels as a third axis): ``(N, C, H, W) ->
    (N, 4C, H/2, W/2)``. Spatially it tiles exactly like :class:`DWT2d`."""

    def forward(self, x: Tensor) -> Tensor:
        return dwt3(self._cast(x), self.wavelet)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [self.wavelet.analysis_op()]


class IDWT3d(_Layer):
    """:func:`idwt3` as a layer: ``(N, 4C, h, w) -> (N, C, 2h, 2w)``; tiles like :class:`IDWT2d`."""

    def forward(self, y: Tensor) -> Tensor:
        return idwt3(self._cast(y), self.wavelet)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [self.wavelet.synthesis_op()]


__all__ = ["ALPHA", "BANDS_2D", "BANDS_3D", "BETA", "DELTA", "DWT2d", "DWT3d", "GAMMA", "IDWT2d", "IDWT3d",
           "K97", "Pyramid", "Step", "WAVELETS", "Wavelet", "dwt", "dwt2", "dwt3", "get_wavelet", "idwt",
           "idwt2", "idwt3", "wavedec2", "wavedec3", "waverec"]
