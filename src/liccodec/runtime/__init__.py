"""The codec without torch: numpy, constriction and the shipped weights.

Importing torch takes 1.4 to 3 s on the machines this project runs on, several times what
coding a photo takes once it is imported (docs/speed.md). ``lic decode``/``lic encode`` and
:func:`liccodec.decode`/:func:`liccodec.encode` therefore run here, for every architecture
this package knows (:data:`SUPPORTED`): the decoder in this module, the encoder in
:mod:`liccodec.runtime.encoder`. The torch models (``liccodec.models``) train, export, code
the other architectures, and stay the reference the tests hold this package to.

What it computes, for the mean-scale hyperprior family (``msh``, and ``charm`` with its
channel slices and latent residual prediction), mirrors ``liccodec.latent.hyperprior`` and
``liccodec.latent.channelwise`` step by step:

* the exact part (z, the integer hyper-synthesis, the slice networks, the scale indices,
  y's symbols and means) in integers, bit-identical to the torch models on any machine;
* the float part (inverse gains, uniform or one per position of y for a file with a
  quality map, residual prediction, synthesis) in float32, where the
  pixels may differ from the torch path by rounding (the torch path runs bf16 where the
  CPU has it), far below one code value on average (tests/runtime).

Images above the tiling threshold (``liccodec.tiling.TilePolicy``) are decoded tile by
tile exactly as the torch models tile them.

Both directions build on :class:`ExactModel`, the integer state of a shipped model, and read
the weights once per process (:func:`model_tensors`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from liccodec.entropy import StreamReader, TableSet, reader_of
from liccodec.errors import FormatError, ModelError
from liccodec.fixedpoint import (ACT_BITS, ACT_CLIP, BELOW, EXACT_LIMIT, GAIN_BITS, Q_UNIT, Z_LIMIT, level_of_quality,
                                 level_split)
from liccodec.runtime.ops import conv2d, conv_transpose2d, gdn
from liccodec.tiling import Geometry, TilePolicy, run_tiled

#: architectures this decoder runs
SUPPORTED = ("msh", "charm")


# ---- exact integer networks ------------------------------------------------------------
@dataclass(frozen=True)
class IntegerLayer:
    """One exported integer (transposed) convolution: the one implementation of the exact
    arithmetic, which the torch models' ``liccodec.nn.integer`` runs too.

    Activations stay float64 holding integers from layer to layer, and the requantization
    runs there too, as floor((acc + bias + 2**(shift - 1)) * 2**-shift): every value it
    touches is an integer below 2**53 (checked in :meth:`build`), so the sum is exact,
    scaling by a power of two is exact, and the result is the integer rounding shift's
    without a conversion to int64 and back around each layer."""

    deconv: bool
    weight: np.ndarray   # float64 holding integers: (k, k, Ci, Co) for conv, (Ci, Co, k, k) for deconv
    offset: np.ndarray   # float64 holding bias + 2**(shift - 1), the bias at scale 2**(shift + ACT_BITS)
    shift: int
    stride: int
    padding: int
    output_padding: int
    relu: bool

    @classmethod
    def build(cls, deconv: bool, weight: np.ndarray, bias: np.ndarray, shift: int, stride: int, padding: int,
              output_padding: int, relu: bool) -> "IntegerLayer":
        """From the exported form: integer weights in torch's layout ((Co, Ci, k, k) for a
        convolution, (Ci, Co, k, k) for a transposed one)."""
        shift = int(shift)
        offset = np.asarray(bias).astype(np.int64) + (1 << (shift - 1))
        # one pass: a convolution's weights as ops.conv2d takes them; a transposed one's
        # stored (Ci, k, k, Co) and seen in torch's layout, so that the (Ci, k*k*Co) matrix
        # of them that ops._scatter_transpose2d multiplies by is a view
        weight = np.asarray(weight)
        w = (weight.transpose(0, 2, 3, 1) if deconv else weight.transpose(2, 3, 1, 0)).astype(np.float64, order="C")
        # a bound on every sum with activations up to ACT_CLIP: a cheap one, then, only if
        # that one is too loose, the exact one (Co is the last axis of both layouts)
        room = EXACT_LIMIT - int(np.abs(offset).max())
        if w.size // w.shape[-1] * int(max(w.max(), -w.min())) * ACT_CLIP >= room:
            if int(np.abs(w).sum(axis=(0, 1, 2)).max()) * ACT_CLIP >= room:
                raise ModelError("an integer layer's sums can leave the range float64 holds exactly")
        w = w.transpose(0, 3, 1, 2) if deconv else w
        return cls(bool(deconv), w, offset.astype(np.float64), shift, int(stride), int(padding),
                   int(output_padding), bool(relu))

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [(self.deconv, self.weight.shape[-1] if self.deconv else self.weight.shape[0],
                 self.stride, self.padding)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(H, W, Ci) -> (Ho, Wo, Co), float64 holding integers."""
        if self.deconv:
            acc = conv_transpose2d(x, self.weight, self.offset, self.stride, self.padding, self.output_padding)
        else:
            acc = conv2d(x, self.weight, self.offset, self.stride, self.padding)
        acc *= 2.0 ** -self.shift
        np.floor(acc, out=acc)
        return np.clip(acc, 0 if self.relu else -ACT_CLIP, ACT_CLIP, out=acc)


class IntegerChain:
    """A chain of :class:`IntegerLayer` on NCHW int64 arrays, as tiling expects."""

    def __init__(self, layers: list[IntegerLayer]):
        self.layers = layers

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], prefix: str) -> "IntegerChain":
        layers, i = [], 0
        while f"{prefix}.{i}.weight" in t:
            layers.append(IntegerLayer.build(t[f"{prefix}.{i}.meta"][0], t[f"{prefix}.{i}.weight"],
                                             t[f"{prefix}.{i}.bias"], *t[f"{prefix}.{i}.meta"][1:]))
            i += 1
        if not layers:
            raise ModelError(f"the weights carry no integer layers under {prefix!r}")
        return cls(layers)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [op for layer in self.layers for op in layer.axis_ops()]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, Ci, H, W) int64 (clipped to +-ACT_CLIP first) -> (B, Co, Ho, Wo) int64."""
        out = []
        for image in x:
            h = np.clip(image.transpose(1, 2, 0), -ACT_CLIP, ACT_CLIP).astype(np.float64)
            for layer in self.layers:
                h = layer(h)
            out.append(h.transpose(2, 0, 1))
        return np.stack(out).astype(np.int64)


def hyper_params(hs: IntegerChain, z_median: np.ndarray, inv_hyper_gain: np.ndarray, z_sym: np.ndarray,
                 q_milli: int, tile: int | None) -> tuple[np.ndarray, np.ndarray]:
    """z symbols (1, N, h, w) -> (scales, means) of y, both in ACT_BITS fixed point: z
    dequantized with the inverse hyper-gain of the quality (linear between the two trained
    levels around it, in integers), then the integer hyper-synthesis. ``tile`` (a core side in
    z positions) runs it tile by tile, bit-identical to the whole. The encoder
    (``latent.hyperprior.ExactParams``) calls this too."""
    levels = inv_hyper_gain.shape[0]
    lo, f = level_split(q_milli, levels)
    hi = min(lo + 1, levels - 1)
    g = inv_hyper_gain[lo] * (Q_UNIT - f) + inv_hyper_gain[hi] * f
    if f < 0 and g.min() <= 0:  # extrapolated below level 0 past where these weights allow
        raise FormatError(f"quality {q_milli / Q_UNIT:g} is below what this model's hyper-gains extrapolate to")
    num = ((z_sym << ACT_BITS) + z_median.reshape(1, -1, 1, 1)) * g.reshape(1, -1, 1, 1)
    d = Q_UNIT << GAIN_BITS
    z_hat = (num + d // 2) // d
    params = hs(z_hat) if tile is None else run_tiled(hs, z_hat, Geometry.of(hs), tile)
    half = params.shape[1] // 2
    return params[:, :half], params[:, half:]


def code_slices(nets: list[IntegerChain], thresholds: np.ndarray, scales_q: np.ndarray, means_q: np.ndarray,
                tile: int | None, code: Callable[[int, np.ndarray, np.ndarray], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The channel slices of ``latent.channelwise``, in order: slice i's integer network
    corrects the hyperprior's (scales, means) from them and the slices coded before it;
    ``code(i, scale index, means)`` encodes or decodes slice i and returns its symbols.
    Returns (y symbols, means in ACT_BITS fixed point), the same for the encoder (which calls
    this through ``ChannelConditional``) and the decoder."""
    c = scales_q.shape[1] // len(nets)
    limit = ACT_CLIP >> ACT_BITS
    syms, mq, y_hat_q = [], [], []
    for i, net in enumerate(nets):
        s, m = scales_q[:, i * c:(i + 1) * c], means_q[:, i * c:(i + 1) * c]
        ctx = np.concatenate([s, m, *y_hat_q], axis=1)
        d = net(ctx) if tile is None else run_tiled(net, ctx, Geometry.of(net), tile)
        m = m + d[:, c:]
        y_sym = code(i, np.searchsorted(thresholds, s + d[:, :c], side="left"), m)
        syms.append(y_sym)
        mq.append(m)
        # y_hat in fixed point for the next slices; symbols beyond what an activation can
        # hold are clipped first, so that no product leaves int64 whatever a file contains
        y_hat_q.append(np.clip(y_sym, -limit, limit) * (1 << ACT_BITS) + m)
    return np.concatenate(syms, axis=1), np.concatenate(mq, axis=1)


def gain_at(table: np.ndarray, q_milli: int, below: str = "geometric") -> np.ndarray:
    """Row of a (levels, C) float32 gain table at quality ``q_milli``, as ``nn.GainUnits``
    computes it: linear interpolation, in float32, between the two trained levels around it;
    below level 0, extrapolation from levels 0 and 1, ``below`` (geometric or linear)."""
    top = table.shape[0] - 1
    level = min(max(np.float32(level_of_quality(q_milli)), np.float32(-BELOW if top else 0)), np.float32(top))
    lo = min(max(int(np.floor(level)), 0), max(top - 1, 0))
    hi = min(lo + 1, top)
    t = np.float32(level - lo)
    if t < 0 and below == "geometric":
        return table[0] * (table[1] / table[0]) ** t
    return table[lo] + t * (table[hi] - table[lo])


# ---- float networks ----------------------------------------------------------------------
def _nonneg(t: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A GDN parameter through its reparametrization: max(p, bound)**2 - pedestal."""
    p = t[name].astype(np.float32)
    bound = t[f"{name}_reparam.lower_bound.bound"].astype(np.float32)
    return np.maximum(p, bound) ** 2 - t[f"{name}_reparam.pedestal"].astype(np.float32)


def gdn_layers(t: dict[str, np.ndarray], prefix: str, transposed: bool) -> list[tuple]:
    """The layers of a GDN transform (``g_a``, ``g_s``) in float32: ("gdn", beta, gamma) or
    (kind, weight, bias, k), kind "deconv" with torch's weight layout (Ci, Co, k, k), or
    "conv" with the layout of ``ops.conv2d`` (k, k, Ci, Co)."""
    layers: list[tuple] = []
    i = 0
    while f"{prefix}.{i}.weight" in t or f"{prefix}.{i}.beta" in t:
        p = f"{prefix}.{i}"
        if f"{p}.beta" in t:
            layers.append(("gdn", _nonneg(t, f"{p}.beta"), _nonneg(t, f"{p}.gamma")))
        else:
            w = t[f"{p}.weight"].astype(np.float32)
            k = w.shape[-1]
            b = t[f"{p}.bias"].astype(np.float32)
            layers.append(("deconv", w, b, k) if transposed
                          else ("conv", np.ascontiguousarray(w.transpose(2, 3, 1, 0)), b, k))
        i += 1
    if not layers:
        raise ModelError(f"the weights carry no layers under {prefix!r}")
    return layers


class GdnTransform:
    """A GDN transform of the msh family on (H, W, C) float32: 5x5 stride-2 convolutions with
    GDNs between (``g_a``), or transposed ones with inverse GDNs (``g_s``, ``transposed``)."""

    def __init__(self, t: dict[str, np.ndarray], prefix: str, transposed: bool):
        self.transposed = transposed
        self.layers = gdn_layers(t, prefix, transposed=transposed)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        kind = "deconv" if self.transposed else "conv"
        return [(self.transposed, layer[3], 2, layer[3] // 2) for layer in self.layers if layer[0] == kind]

    def run(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            if layer[0] == "gdn":
                x = gdn(x, layer[1], layer[2], inverse=self.transposed)
            elif self.transposed:
                _, w, b, k = layer
                x = conv_transpose2d(x, w, b, 2, k // 2, 1)
            else:
                _, w, b, k = layer
                x = conv2d(x, w, b, 2, k // 2)
        return x


class Synthesis(GdnTransform):
    """``g_s``: (1, M, h, w) float32 -> (1, 3, 16h, 16w) clipped to [0, 1]."""

    def __init__(self, t: dict[str, np.ndarray], prefix: str = "g_s"):
        super().__init__(t, prefix, transposed=True)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        x = self.run(np.ascontiguousarray(y[0].transpose(1, 2, 0), dtype=np.float32))
        return np.clip(x, 0.0, 1.0).transpose(2, 0, 1)[None]


class ResidualPrediction:
    """Latent residual prediction (``liccodec.latent.channelwise.LatentResidual``)."""

    def __init__(self, t: dict[str, np.ndarray], slices: int, prefix: str = "latent.lrp.nets"):
        self.nets = []
        for i in range(slices):
            layers, j = [], 0
            while f"{prefix}.{i}.{j}.weight" in t:
                w = t[f"{prefix}.{i}.{j}.weight"].astype(np.float32)
                layers.append((np.ascontiguousarray(w.transpose(2, 3, 1, 0)), t[f"{prefix}.{i}.{j}.bias"].astype(np.float32)))
                j += 2  # conv, ReLU, conv, ReLU, conv
            if not layers:
                raise ModelError(f"the weights carry no residual-prediction network {i}")
            self.nets.append(layers)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [(False, w.shape[0], 1, w.shape[0] // 2) for w, _ in self.nets[0]]

    def __call__(self, means_and_y: np.ndarray) -> np.ndarray:
        """(1, 2M, h, w): means then y_hat -> y_hat + 0.5 tanh(residual), (1, M, h, w)."""
        x = means_and_y[0].transpose(1, 2, 0)
        m = x.shape[-1] // 2
        c = m // len(self.nets)
        means, y_hat = x[..., :m], x[..., m:]
        res = []
        for i, layers in enumerate(self.nets):
            h = np.ascontiguousarray(np.concatenate([means[..., i * c:(i + 1) * c], y_hat[..., :(i + 1) * c]], axis=-1))
            for j, (w, b) in enumerate(layers):
                h = conv2d(h, w, b, 1, w.shape[0] // 2)
                if j < len(layers) - 1:
                    np.maximum(h, 0, out=h)
            res.append(h)
        out = y_hat + 0.5 * np.tanh(np.concatenate(res, axis=-1))
        return out.transpose(2, 0, 1)[None]


# ---- the decoder ---------------------------------------------------------------------------
def _tables(t: dict[str, np.ndarray], p: str) -> TableSet:
    return TableSet(t[f"{p}.pmf"], t[f"{p}.length"], t[f"{p}.offset"])


class ExactModel:
    """The integer state of a shipped msh/charm model (``exact.*``): what decides the coder's
    parameters, the same for its encoder and its decoder."""

    #: the numpy package's name in errors ("decoder", "encoder")
    role = "codec"

    def __init__(self, arch: str, config: dict, t: dict[str, np.ndarray]):
        if arch not in SUPPORTED:
            raise ModelError(f"the numpy {self.role} does not run architecture {arch!r}")
        self.N, self.M = int(config["N"]), int(config["M"])
        self.slices = int(config.get("slices", 1)) if arch == "charm" else 1
        self.hs = IntegerChain.from_tensors(t, "exact.h_s")
        self.cc = []
        if arch == "charm":
            self.cc = [IntegerChain.from_tensors(t, f"exact.cc.{i}") for i in range(self.slices)]
        self.z_median = t["exact.z_median"].astype(np.int64)
        self.inv_hyper_gain = t["exact.inv_hyper_gain"].astype(np.int64)
        self.thresholds = t["exact.thresholds"].astype(np.int64)
        self.z_tables, self.y_tables = _tables(t, "exact.z_tables"), _tables(t, "exact.y_tables")
        self.y_stride = 16
        self.downsampling = 64

    # -- the exact part: integers only -----------------------------------------------------
    def hyper_params(self, z_sym: np.ndarray, q_milli: int, tile: int | None) -> tuple[np.ndarray, np.ndarray]:
        return hyper_params(self.hs, self.z_median, self.inv_hyper_gain, z_sym, q_milli, tile)

    def index(self, scales_q: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.thresholds, scales_q, side="left")

    def _check_slices(self) -> None:
        if len(self.cc) != self.slices:
            raise ModelError(f"weights carry {len(self.cc)} slice networks, the model has {self.slices} slices")


class Decoder(ExactModel):
    """A shipped msh/charm model's decoder: streams -> pixels."""

    role = "decoder"

    def __init__(self, arch: str, config: dict, t: dict[str, np.ndarray]):
        super().__init__(arch, config, t)
        self.inv_gain = np.exp(t["latent.gain.log_inv_gain"].astype(np.float32))
        self.lrp = ResidualPrediction(t, self.slices) if arch == "charm" and config.get("lrp") else None
        self.g_s = Synthesis(t)

    def decode_latents(self, reader: StreamReader, z_hw: tuple[int, int], q_milli: int,
                       tile: int | None) -> tuple[np.ndarray, np.ndarray]:
        """-> (y symbols, means in ACT_BITS fixed point), (1, M, 4h, 4w) int64 each."""
        h, w = z_hw
        reader.check_room(self.z_tables, np.full(self.N, h * w))
        chan = np.broadcast_to(np.arange(self.N).reshape(1, -1, 1, 1), (1, self.N, h, w))
        z_sym = reader.take(self.z_tables, chan).reshape(1, self.N, h, w)
        if np.abs(z_sym).max(initial=0) > Z_LIMIT:
            raise FormatError("hyper-latent value out of range")
        scales_q, means_q = self.hyper_params(z_sym, q_milli, None if tile is None else max(1, tile // 4))
        if not self.cc:
            index = self.index(scales_q)
            return reader.take(self.y_tables, index).reshape(index.shape), means_q
        self._check_slices()

        def decode(i: int, index: np.ndarray, means: np.ndarray) -> np.ndarray:
            return reader.take(self.y_tables, index).reshape(index.shape)

        return code_slices(self.cc, self.thresholds, scales_q, means_q, tile, decode)

    # -- the float part --------------------------------------------------------------------
    def y_hat(self, y_sym: np.ndarray, means_q: np.ndarray, q_milli: int, tile: int | None,
              qmap: np.ndarray | None = None) -> np.ndarray:
        """The synthesis' input: decoded latents (gained domain) times the inverse gains of
        ``q_milli``, or of each position's own quality in ``qmap`` ((h, w) thousandths)."""
        y = (y_sym + means_q / 2.0**ACT_BITS).astype(np.float32)
        if self.lrp is not None:
            ctx = np.concatenate([(means_q / 2.0**ACT_BITS).astype(np.float32), y], axis=1)
            y = self.lrp(ctx) if tile is None else run_tiled(self.lrp, ctx, Geometry.of(self.lrp), tile)
        if qmap is None:
            return y * self._inverse_gain(q_milli).reshape(1, -1, 1, 1)
        if tuple(np.shape(qmap)) != y.shape[-2:]:
            raise ValueError(f"quality map of {np.shape(qmap)} for y of {y.shape[-2:]}")
        qualities, index = np.unique(np.asarray(qmap, dtype=np.int64), return_inverse=True)
        table = np.stack([self._inverse_gain(int(q)) for q in qualities])  # (K, M)
        return y * table[index.reshape(np.shape(qmap))].transpose(2, 0, 1)[None]

    def _inverse_gain(self, q_milli: int) -> np.ndarray:
        return gain_at(self.inv_gain, q_milli)

    def decode(self, streams: dict[str, bytes], hw: tuple[int, int], q_milli: int,
               tiles: TilePolicy | None = None, qmap: np.ndarray | None = None) -> np.ndarray:
        """Streams of an image of padded size ``hw`` -> (hw[0], hw[1], 3) uint8; ``qmap``:
        the quality of each position of y (a file with a quality map, ``q_milli`` its base)."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        tiled = tiles.applies(*hw)
        tile = tiles.core(self.y_stride) if tiled else None
        reader = reader_of(streams)
        z_hw = (hw[0] // self.downsampling, hw[1] // self.downsampling)
        y_sym, means_q = self.decode_latents(reader, z_hw, q_milli, tile)
        reader.finish()
        y = self.y_hat(y_sym, means_q, q_milli, tile, qmap)
        x = self.g_s(y) if not tiled else run_tiled(self.g_s, y, Geometry.of(self.g_s), tile)
        return np.rint(x[0].transpose(1, 2, 0) * 255.0).astype(np.uint8)


def load_decoder(model_id: str) -> Decoder:
    """The decoder of a shipped model: weights verified against the manifest's sha256."""
    return load_part(Decoder, model_id)


def load_part(cls: type, model_id: str):
    """``cls`` (the numpy ``Decoder`` or ``encoder.Encoder``) of a shipped model, built once
    per process from its verified weights."""
    from liccodec.weights import get_spec

    spec = get_spec(model_id)
    return _load(cls, spec, str(spec.path))


@lru_cache(maxsize=8)
def _load(cls: type, spec, path: str):
    return cls(spec.arch, dict(spec.config), model_tensors(spec, path))


#: what the numpy encoder and decoder read of a weights file
_PREFIXES = ("exact.", "g_a.", "g_s.", "latent.gain.", "latent.hyper_gain.", "latent.h_a.", "latent.lrp.")


@lru_cache(maxsize=4)
def model_tensors(spec, path: str) -> dict[str, np.ndarray]:
    """The tensors the numpy coders read, as numpy arrays, read once per process (and
    verified against the manifest's sha256 then) however many coders are built from them."""
    from liccodec.weights import read_tensors

    return read_tensors(spec, "np", _PREFIXES)
