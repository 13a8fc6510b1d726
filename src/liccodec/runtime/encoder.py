"""The encoder without torch: pixels -> the streams of a .lic file, in numpy.

``lic encode``, :func:`liccodec.encode` and rate control encode here for the architectures
of :data:`liccodec.runtime.SUPPORTED` (``msh``, ``charm``), so that an encode does not wait
for torch to import (docs/speed.md). It mirrors ``LearnedCodec.compress`` and
``GainedHyperprior.encode`` / ``ChannelConditional`` step by step::

    x --g_a--> y --*g--> y_g --h_a--> . --*hg--> z_g --round(. - median)--> z_sym --> rANS
                          |                                                   |
                          |                      runtime.hyper_params (integers) --> scales, means
                          +--round(y_g - means), slice by slice (runtime.code_slices) --> rANS

* the float part (``g_a``, the gains, ``h_a``) in float32 on the operations of
  :mod:`liccodec.runtime.ops`; the torch encoder may run it in bf16 (``codec.precision()``),
  so y can differ from the torch models' by rounding, and a symbol that sits at a rounding
  boundary may land on its other side (docs/speed.md measures how often);
* everything after ``z_g`` and ``y_g`` (:meth:`Encoder.code`) is the decoder's own integer
  code, so the same ``y_g``/``z_g`` give the torch encoder's symbols and bytes exactly.

What the file means never depends on which encoder wrote it: the decoder rebuilds the
coder's parameters from the symbols alone.
"""
from __future__ import annotations


import numpy as np

from liccodec.entropy import StreamWriter, streams_of
from liccodec.fixedpoint import ACT_BITS, Z_LIMIT
from liccodec.runtime import ExactModel, GdnTransform, code_slices, gain_at, load_part
from liccodec.runtime.ops import conv2d
from liccodec.tiling import Geometry, TilePolicy, run_tiled

#: the slope of the hyper-analysis' ``nn.LeakyReLU`` (torch's default)
LEAKY_SLOPE = np.float32(0.01)


class Analysis(GdnTransform):
    """``g_a``: (1, 3, H, W) float32 in [0, 1] -> y, (1, M, H/16, W/16) float32."""

    def __init__(self, t: dict[str, np.ndarray], prefix: str = "g_a"):
        super().__init__(t, prefix, transposed=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(np.ascontiguousarray(x[0].transpose(1, 2, 0), dtype=np.float32)).transpose(2, 0, 1)[None]


class HyperAnalysis:
    """``h_a`` of ``latent.hyperprior``: conv 3x3, LeakyReLU, conv 5x5/2, LeakyReLU, conv 5x5/2."""

    def __init__(self, t: dict[str, np.ndarray], prefix: str = "latent.h_a"):
        self.layers = []   # (weight (k, k, Ci, Co), bias, stride)
        for i, stride in ((0, 1), (2, 2), (4, 2)):
            w = t[f"{prefix}.{i}.weight"].astype(np.float32)
            self.layers.append((np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
                                t[f"{prefix}.{i}.bias"].astype(np.float32), stride))

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [(False, w.shape[0], s, w.shape[0] // 2) for w, _, s in self.layers]

    def __call__(self, y_g: np.ndarray) -> np.ndarray:
        """(1, M, h, w) float32 -> (1, N, h/4, w/4) float32."""
        h = np.ascontiguousarray(y_g[0].transpose(1, 2, 0), dtype=np.float32)
        for j, (w, b, stride) in enumerate(self.layers):
            h = conv2d(h, w, b, stride, w.shape[0] // 2)
            if j < len(self.layers) - 1:
                h = np.where(h > 0, h, h * LEAKY_SLOPE)
        return h.transpose(2, 0, 1)[None]


class Encoder(ExactModel):
    """A shipped msh/charm model's encoder: pixels -> streams (the container's ``ans``/``esc``)."""

    role = "encoder"
    #: the gains act on the float side only, so each position of y may have its own quality
    spatial_quality = True

    def __init__(self, arch: str, config: dict, t: dict[str, np.ndarray]):
        super().__init__(arch, config, t)
        self.g_a = Analysis(t)
        self.h_a = HyperAnalysis(t)
        self.gain = np.exp(t["latent.gain.log_gain"].astype(np.float32))
        self.hyper_gain = np.exp(t["latent.hyper_gain.log_gain"].astype(np.float32))

    # -- the float part ----------------------------------------------------------------------
    def analysis(self, x: np.ndarray, tiles: TilePolicy | None = None) -> np.ndarray:
        """The quality-independent half: x (H, W, 3) float32 in [0, 1], sides multiples of
        :attr:`downsampling` (``imageio.to_padded_array``) -> y (1, M, H/16, W/16) float32,
        tile by tile above the tiling threshold, as ``LearnedCodec.analysis``."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        nchw = x.transpose(2, 0, 1)[None]
        if not tiles.applies(*x.shape[:2]):
            return self.g_a(nchw)
        return run_tiled(self.g_a, nchw, Geometry.of(self.g_a), tiles.core(1))

    def gains(self, q_milli: int, qmap: np.ndarray | None) -> np.ndarray:
        """y's gain: (1, M, 1, 1) at ``q_milli``, or (1, M, h, w) with each position's quality
        from ``qmap`` ((h, w) thousandths), each quality's vector computed as a uniform one's."""
        if qmap is None:
            return gain_at(self.gain, q_milli).reshape(1, -1, 1, 1)
        qualities, index = np.unique(np.asarray(qmap, dtype=np.int64), return_inverse=True)
        table = np.stack([gain_at(self.gain, int(q)) for q in qualities])  # (K, M)
        return table[index.reshape(np.shape(qmap))].transpose(2, 0, 1)[None]

    def hyper_analysis(self, y: np.ndarray, q_milli: int, tile: int | None = None,
                       qmap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """y -> (y_g, z_g): y times its gains, and h_a of that times the hyper-gain of the
        base quality ``q_milli``; ``tile`` (a core side in y positions) tiles h_a."""
        if qmap is not None and tuple(np.shape(qmap)) != tuple(y.shape[-2:]):
            raise ValueError(f"quality map of {np.shape(qmap)} for y of {tuple(y.shape[-2:])}")
        y_g = np.asarray(y, dtype=np.float32) * self.gains(q_milli, qmap)
        z = self.h_a(y_g) if tile is None else run_tiled(self.h_a, y_g, Geometry.of(self.h_a), tile)
        return y_g, z * gain_at(self.hyper_gain, q_milli, below="linear").reshape(1, -1, 1, 1)

    # -- the exact part: the decoder's integer code ------------------------------------------------
    def code(self, y_g: np.ndarray, z_g: np.ndarray, q_milli: int, tile: int | None = None) -> dict[str, bytes]:
        """Gained latents -> streams: z rounded around its medians, the integer hyper-synthesis
        and slice networks of the decoder, y rounded around their means; one rANS stream (z,
        then y or its slices) and its escapes. The same (y_g, z_g) give the same bytes as the
        torch encoder."""
        writer = StreamWriter()
        med = (self.z_median.astype(np.float64) / 2**ACT_BITS).reshape(1, -1, 1, 1)
        z_sym = np.clip(np.round(z_g.astype(np.float64) - med), -Z_LIMIT, Z_LIMIT).astype(np.int64)
        chan = np.broadcast_to(np.arange(self.N).reshape(1, -1, 1, 1), z_sym.shape)
        writer.add(self.z_tables, z_sym, chan)
        scales_q, means_q = self.hyper_params(z_sym, q_milli, None if tile is None else max(1, tile // 4))
        y = y_g.astype(np.float64)
        if not self.cc:
            writer.add(self.y_tables, np.round(y - means_q / 2.0**ACT_BITS).astype(np.int64), self.index(scales_q))
            return streams_of(writer)
        self._check_slices()
        c = self.M // self.slices

        def encode(i: int, index: np.ndarray, means: np.ndarray) -> np.ndarray:
            y_sym = np.round(y[:, i * c:(i + 1) * c] - means / 2.0**ACT_BITS).astype(np.int64)
            writer.add(self.y_tables, y_sym, index)
            return y_sym

        code_slices(self.cc, self.thresholds, scales_q, means_q, tile, encode)
        return streams_of(writer)

    # -- the quality-dependent half ----------------------------------------------------------------
    def compress_latent(self, y: np.ndarray, q_milli: int, tiles: TilePolicy | None = None,
                        qmap: np.ndarray | None = None) -> dict[str, bytes]:
        """The quality-dependent half: code y at ``q_milli`` (the base quality when ``qmap``,
        a quality per position of y in thousandths, is given), tiled for big images."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        hw = (y.shape[-2] * self.y_stride, y.shape[-1] * self.y_stride)
        tile = tiles.core(self.y_stride) if tiles.applies(*hw) else None
        y_g, z_g = self.hyper_analysis(y, q_milli, tile, qmap)
        return self.code(y_g, z_g, q_milli, tile)


def load_encoder(model_id: str) -> Encoder:
    """The encoder of a shipped model: weights verified against the manifest's sha256."""
    return load_part(Encoder, model_id)
