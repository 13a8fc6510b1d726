"""What every architecture shares: an analysis transform, a synthesis transform and a
latent codec (``liccodec.latent.base.LatentCodec``), and everything done around them.

    x --g_a--> y --[latent codec]--> y_hat --g_s--> x_hat

:class:`LearnedCodec` owns tiling, transform precision, real coding (compress/decompress),
the shipped weights (export/load) and the lambda of each trained level. An architecture is
a subclass that builds ``g_a``, ``g_s`` and ``latent`` from its config dataclass (which has
``lambdas``) and registers itself::

    @register_arch("name", config=MyConfig, tiny=dict(...), summary="...")
    class MyCodec(LearnedCodec):
        def __init__(self, cfg: MyConfig, inference: bool = False):
            super().__init__(cfg, g_a, g_s, SomeLatentCodec(..., inference=inference))

Its layers must declare their geometry for tiling (``liccodec.tiling``); the contract test
(tests/models/test_contract.py) then covers it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.latent.base import LatentCodec, quality_of_level
from liccodec.nn import transform_precision
from liccodec.tiling import Geometry, TilePolicy, run_tiled

# float parameters of the transforms ship in float16: it halves the file and changes the
# reconstruction by < 0.01 dB; buffers, gains and the latent codec's own state stay float32
FLOAT16 = ("g_a.", "g_s.", "g_f.")


@dataclass
class CodecOut:
    x_hat: Tensor
    likelihoods: dict[str, Tensor]
    y_hat: Tensor | None = None   # the (training-time) latent g_s decoded, for conditioning
    y: Tensor | None = None       # g_a's output, before gains and quantization (distillation)


class LearnedCodec(nn.Module):
    """``g_a`` -> latent codec -> ``g_s``, variable rate: ``level`` is a float in
    [0, levels-1] per image (one trained lambda per level)."""

    def __init__(self, cfg: Any, g_a: nn.Module, g_s: nn.Module, latent: LatentCodec):
        super().__init__()
        self.cfg = cfg
        # registration order fixes the state dict's and the optimizer's parameter order
        self.g_a = g_a
        self.g_s = g_s
        self.latent = latent
        # the feedback encoder (``feedback`` configs): None, or a network from (x, x_hat) to a
        # correction of y, x_hat being what g_a's y decodes to at the level (:meth:`feedback`)
        self.g_f: nn.Module | None = None

    @cached_property
    def y_stride(self) -> int:
        """Image pixels per latent position of y (g_a's total downsampling)."""
        return Geometry.of(self.g_a).down

    @cached_property
    def downsampling(self) -> int:
        """Input sides are padded to a multiple of this (g_a's and the latent codec's)."""
        return self.y_stride * self.latent.downsampling

    def lambda_at(self, level: Tensor) -> Tensor:
        """Lambda for fractional levels: geometric interpolation between trained levels."""
        logl = torch.log(torch.tensor(self.cfg.lambdas, device=level.device))
        top = len(self.cfg.lambdas) - 1
        level = level.clamp(0, top)
        lo = level.floor().long().clamp(max=max(top - 1, 0))
        hi = (lo + 1).clamp(max=top)
        t = level - lo.to(level.dtype)
        return torch.exp(logl[lo] + t * (logl[hi] - logl[lo]))

    def quality_range(self) -> tuple[float, float, float]:
        """(min, max, default) quality: quality q codes at trained level q - 1."""
        levels = len(self.cfg.lambdas)
        return 1.0, float(levels), float(levels // 2 + 1)

    @staticmethod
    def quality_milli(level: float) -> int:
        """The quality, in thousandths, that codes at (fractional) trained ``level``."""
        return quality_of_level(level)

    def regularizer(self, out: CodecOut) -> Tensor | None:
        """A training-loss term of the architecture's own, per image (B,), that the trainer adds
        to rate + lambda * distortion (e.g. ``deform``'s L1 sparsity of the latent); None: none."""
        return None

    def feedback(self, x: Tensor, y: Tensor, level: Tensor) -> Tensor:
        """y corrected by ``g_f`` from the picture it codes to: y + g_f(x, g_s(y_hat)), y_hat
        rounded as in a file. A learned step of what ``--refine`` does by gradient steps: the
        encoder sees the synthesis' error after quantization. The decoder is unchanged.
        Without ``g_f``, y."""
        if self.g_f is None:
            return y
        with torch.no_grad():
            modes = [(m, m.training) for m in self.latent.modules()]   # frozen parts stay in eval
            y_hat = self.latent.eval()(y, level).y_hat
            for m, training in modes:
                m.training = training
            x_hat = self.g_s(y_hat.to(y.dtype) if torch.is_autocast_enabled() else y_hat).clamp(0, 1)
        return self._corrected(x, y, x_hat)

    def _corrected(self, x: Tensor, y: Tensor, x_hat: Tensor) -> Tensor:
        """y + g_f(x, x_hat): the feedback encoder's step, in training and in real coding."""
        return y + self.g_f(torch.cat([x, x_hat.to(x.dtype)], dim=1)).to(y.dtype)

    def forward(self, x: Tensor, level: Tensor) -> CodecOut:
        y = self.feedback(x, self.g_a(x), level)
        lat = self.latent(y, level)
        x_hat = self.g_s(lat.y_hat.to(y.dtype) if torch.is_autocast_enabled() else lat.y_hat)
        return CodecOut(x_hat, lat.likelihoods, lat.y_hat, y)

    # ---- real coding -------------------------------------------------------------------
    # Big images run every transform tile by tile (liccodec.tiling): the float transforms
    # then match whole-image processing up to rounding, the integer networks exactly, so a
    # file decodes to the same latents whether either side tiled or not.
    @torch.no_grad()
    def compress(self, x: Tensor, q_milli: int, precision: str = "fp32",
                 tiles: TilePolicy | None = None, qmap: np.ndarray | None = None) -> dict[str, bytes]:
        """x: (1, 3, H, W) in [0, 1], H and W multiples of :attr:`downsampling`.

        ``precision`` ("fp32" or "bf16") applies to the float transforms only; what
        decides the coder's parameters is integer arithmetic either way. ``tiles`` says
        when to tile (default: :meth:`TilePolicy.from_env`). ``qmap`` ((H/s, W/s) for y's
        stride s, thousandths): a quality per position of y (region-of-interest coding,
        latent codecs with ``spatial_quality`` only), ``q_milli`` being the base quality.
        Equal to ``compress_latent(analysis(x))``, which lets one analysis serve several qualities.
        """
        y = self.analysis(x, precision, tiles)
        if self.g_f is not None:
            y = self.feedback_latent(x, y, q_milli, precision, tiles)
        return self.compress_latent(y, q_milli, precision, tiles, qmap)

    @torch.no_grad()
    def feedback_latent(self, x: Tensor, y: Tensor, q_milli: int, precision: str = "fp32",
                        tiles: TilePolicy | None = None) -> Tensor:
        """y corrected by the feedback encoder at ``q_milli``, from the picture that a file of
        g_a's y decodes to (coded for real: the decoder's y_hat). ``g_f`` itself runs on the
        whole image."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        tile = tiles.core(self.y_stride) if tiles.applies(*x.shape[-2:]) else None
        with transform_precision(y.device, precision):
            y_hat = self.latent.compress(y, q_milli, tile)[1]
            x_hat = (self._synthesis(y_hat) if tile is None else
                     run_tiled(self._synthesis, y_hat, Geometry.of(self.g_s), tile))
            return self._corrected(x, y, x_hat)

    @torch.no_grad()
    def analysis(self, x: Tensor, precision: str = "fp32", tiles: TilePolicy | None = None) -> Tensor:
        """The quality-independent half of :meth:`compress`: y = g_a(x), tiled for big x."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        with transform_precision(x.device, precision):
            if not tiles.applies(*x.shape[-2:]):
                return self.g_a(x.contiguous(memory_format=torch.channels_last))
            return run_tiled(self._analysis, x, Geometry.of(self.g_a), tiles.core(1))

    @torch.no_grad()
    def compress_latent(self, y: Tensor, q_milli: int, precision: str = "fp32",
                        tiles: TilePolicy | None = None, qmap: np.ndarray | None = None) -> dict[str, bytes]:
        """The quality-dependent half of :meth:`compress`: code y at ``q_milli`` (and ``qmap``)."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        hw = (y.shape[-2] * self.y_stride, y.shape[-1] * self.y_stride)
        tile = tiles.core(self.y_stride) if tiles.applies(*hw) else None
        with transform_precision(y.device, precision):
            return self.latent.compress(y, q_milli, tile, qmap)[0]

    @torch.no_grad()
    def decompress(self, streams: dict[str, bytes], hw: tuple[int, int], q_milli: int,
                   precision: str = "fp32", tiles: TilePolicy | None = None,
                   qmap: np.ndarray | None = None) -> Tensor:
        """Inverse of :meth:`compress` for a padded size ``hw``; returns x_hat in [0, 1]."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        latent_hw = (hw[0] // self.downsampling, hw[1] // self.downsampling)
        if not tiles.applies(*hw):
            y_hat = self.latent.decompress(streams, latent_hw, q_milli, None, qmap)
            with transform_precision(y_hat.device, precision):
                x_hat = self.g_s(y_hat.contiguous(memory_format=torch.channels_last))
            return x_hat.float().clamp_(0, 1)
        y_hat = self.latent.decompress(streams, latent_hw, q_milli, tiles.core(self.y_stride), qmap)
        with transform_precision(y_hat.device, precision):
            return run_tiled(self._synthesis, y_hat, Geometry.of(self.g_s), tiles.core(self.y_stride))

    def _analysis(self, x: Tensor) -> Tensor:
        return self.g_a(x.contiguous(memory_format=torch.channels_last))

    def _synthesis(self, y_hat: Tensor) -> Tensor:
        return self.g_s(y_hat.contiguous(memory_format=torch.channels_last)).float().clamp_(0, 1)

    # ---- shipped weights ---------------------------------------------------------------
    def grow_rules(self, live: float = 0.0) -> dict[str, dict[str, object]]:
        """How a warm start grows layers that this config made wider than the source's
        (``liccodec.train.warmstart.grow``), by layer name: ``new_outputs="zero"`` starts the
        new output channels at zero, ``new_inputs="init"`` keeps the weights from new inputs
        that are zero at step 0 (so that gradients reach them), ``chunks=k`` grows k equal
        parts of the outputs separately, ``new_bias`` sets the new outputs' bias per chunk.
        Other layers follow the default: new inputs never reach old outputs, new outputs start
        as initialised. ``live`` > 0: new latent channels start live, their scales at that raw
        value (``TrainConfig.grow_live``)."""
        return {f"latent.{k}": v for k, v in self.latent.grow_rules(live).items()}

    def level_tables(self) -> tuple[str, ...]:
        """State names with one row per trained level (remapped by a warm start)."""
        return tuple(f"latent.{n}" for n in self.latent.level_tables())

    def inference_state(self) -> dict[str, Tensor]:
        """Float tensors needed to code (the exact parts are exported separately)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self._training_only())}

    def _training_only(self) -> tuple[str, ...]:
        return tuple(f"latent.{p}" for p in self.latent.training_only)

    def export_tensors(self) -> dict[str, Tensor]:
        """Shipped tensors: transform parameters in float16 (:data:`FLOAT16`), buffers and
        gains in float32, the latent codec's reference-only float tensors and its exact
        integer parts. Loading upcasts to float32.

        A training build derives the exact parts from its floats; an inference build writes
        back what :meth:`load_tensors` read, so export -> load -> export is byte-identical."""
        params = {n for n, _ in self.named_parameters()}
        half = FLOAT16 + tuple(f"latent.{p}" for p in self.latent.float16_export)
        state = {k: (v.half() if k in params and k.startswith(half) else v)
                 for k, v in self.inference_state().items()}
        if self.latent.has_training_parts:
            reference = {f"latent.{k}": v for k, v in self.latent.reference_tensors().items()}
            exact = self.latent.export_exact()
        else:
            reference = dict(getattr(self, "_reference", {}))
            exact = self.latent._require_exact().to_tensors()
        return {**state, **reference, **exact}

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        skip = ("exact.", *(f"latent.{p}" for p in self.latent.reference_only))
        self._reference = {k: v for k, v in tensors.items() if k.startswith(skip[1:])}
        float_part = {k: v for k, v in tensors.items() if not k.startswith(skip)}
        missing, unexpected = self.load_state_dict(float_part, strict=False)
        bad = [k for k in missing if not k.startswith(self._training_only())]
        if bad or unexpected:
            raise KeyError(f"weights do not fit the architecture: missing {bad[:5]}, unexpected {unexpected[:5]}")
        self.latent.load_exact(tensors)
