"""The latent codec contract: what a model's entropy model provides, whatever its kind.

A :class:`LatentCodec` sits between the analysis and the synthesis transform::

    y --[forward: rate estimate, training]--> (y_hat, likelihoods)
    y --[encode: StreamWriter]--> bits --[decode: StreamReader]--> y_hat   (exact)

It owns its training-only parts, its auxiliary loss, and the integer-only state that decides
the coder's parameters (its *exact* dataclass, exported into and loaded from the shipped
weights under ``exact.``). The model around it (``liccodec.models.base``) does tiling,
precision, the container streams and the weight files, and never reaches inside: a
hyperprior, a channel-wise or a checkerboard codec plug into any pair of transforms.

Qualities travel as integers in thousandths (``q_milli``): quality 1.0 is trained level 0,
quality ``levels`` the last one; fractional qualities interpolate between levels. A codec
with :attr:`LatentCodec.spatial_quality` also takes a quality per position of y (``qmap``,
region-of-interest coding, docs/roi.md); ``q_milli`` is then the file's base quality.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.entropy import StreamReader, StreamWriter, reader_of, streams_of
from liccodec.fixedpoint import Q_UNIT, level_of_quality, quality_of_level  # noqa: F401 (re-exported)

_GAUSSIANS: ContextVar[list[tuple[Tensor, Tensor]] | None] = ContextVar("gaussians", default=None)


@contextmanager
def record_gaussians() -> Iterator[list[tuple[Tensor, Tensor]]]:
    """Collect the (means, scales) of the Gaussians that a training forward's rate estimate
    of y uses, one pair per call of the codec's quantizer, in the order it runs (slices,
    anchor/non-anchor passes, wavelet steps), in the domain where y is rounded (gained; a
    wavelet codec's Haar bands). Scales are as predicted, before the likelihood's lower bound.

    Knowledge distillation (``liccodec.train.distill``) compares a student's with a teacher's.
    Recording only keeps references to tensors the forward computes anyway; outside this
    context nothing is kept."""
    token = _GAUSSIANS.set([])
    try:
        yield _GAUSSIANS.get()
    finally:
        _GAUSSIANS.reset(token)


def note_gaussian(means: Tensor, scales: Tensor) -> None:
    """Called by the latent codecs' quantizer with the parameters of each group of y."""
    rec = _GAUSSIANS.get()
    if rec is not None:
        rec.append((means, scales))


@dataclass
class LatentOut:
    y_hat: Tensor                     # what the synthesis gets
    likelihoods: dict[str, Tensor]    # per latent, for the rate term


class LatentCodec(nn.Module):
    """Base of the latent codecs. Subclasses implement :meth:`forward`, :meth:`encode`,
    :meth:`decode` and :meth:`export_exact`, and name their exact dataclass in ``exact_cls``."""

    #: state-dict prefixes (relative to the codec) that only training holds: coding reads the
    #: exported exact state instead, so inference builds leave them out
    training_only: ClassVar[tuple[str, ...]] = ()
    #: prefixes of shipped float tensors that coding never reads (see :meth:`reference_tensors`)
    reference_only: ClassVar[tuple[str, ...]] = ()
    #: prefixes of float parameters shipped in float16 (the rest ship in float32)
    float16_export: ClassVar[tuple[str, ...]] = ()
    #: y positions per position of the coarsest latent: y's sides are multiples of this
    downsampling: ClassVar[int] = 1
    #: codes y with a quality per position (``qmap`` of :meth:`encode`/:meth:`decode`)
    spatial_quality: ClassVar[bool] = False
    #: its exact dataclass: ``from_tensors(dict) -> instance`` and ``to_tensors() -> dict``
    exact_cls: ClassVar[type]
    exact: Any = None

    # ---- training ---------------------------------------------------------------------
    def forward(self, y: Tensor, level: Tensor) -> LatentOut:
        """Rate estimate at fractional ``level`` (B,); noise or rounding as in training."""
        raise NotImplementedError

    def aux_loss(self) -> Tensor:
        """A loss of its own (e.g. a density model's quantiles); zero when none."""
        return torch.zeros(())

    def aux_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by :meth:`aux_loss` only (a separate optimizer)."""
        return []

    def refresh(self) -> None:
        """Set training state that has a closed form instead of a gradient (e.g. the
        quantiles of the z prior). Training calls it after a warm start and every
        ``solve_quantiles_every`` steps."""

    def level_tables(self) -> tuple[str, ...]:
        """Names of (levels, C) parameters with one row per trained level: a warm start onto
        another lambda set interpolates their rows (``liccodec.train.warmstart``)."""
        return ()

    def grow_rules(self, live: float = 0.0) -> dict[str, dict[str, object]]:
        """Layers that a warm start grows other than by the default rule, by name within the
        latent codec (``LearnedCodec.grow_rules``)."""
        return {}

    def integer_nets(self) -> dict[str, nn.Sequential]:
        """Float networks that ship as exact integer networks (``exact.<name>``), by name."""
        return {}

    # ---- export -------------------------------------------------------------------------
    @property
    def has_training_parts(self) -> bool:
        """Built for training (``inference=False``): the exact state can be derived from
        floats. An inference build only has the exact state it loaded."""
        keys = self.state_dict().keys()
        return all(any(k.startswith(p) for k in keys) for p in self.training_only)

    def export_exact(self) -> dict[str, Tensor]:
        """The integer-only state that decides the coder's parameters, as ``exact.*`` tensors,
        derived from the float training parts (export time only)."""
        raise NotImplementedError

    def load_exact(self, tensors: dict[str, Tensor]) -> None:
        self.exact = self.exact_cls.from_tensors(tensors)

    def reference_tensors(self) -> dict[str, Tensor]:
        """Float tensors (names relative to the codec) shipped for warm starts and reference
        comparisons, never read by coding; under :attr:`reference_only` prefixes."""
        return {}

    def _require_exact(self) -> Any:
        if self.exact is None:
            raise RuntimeError("exported exact parameters are not loaded (see liccodec.weights)")
        return self.exact

    # ---- exact coding -----------------------------------------------------------------
    def encode(self, y: Tensor, q_milli: int, writer: StreamWriter, tile: int | None = None,
               qmap: np.ndarray | None = None) -> Tensor:
        """Code y (1, M, h, w) at ``q_milli`` into ``writer``; returns the decoder's y_hat.
        ``tile`` (a core side in y positions) only bounds memory: the bits are the same.
        ``qmap`` ((h, w) thousandths; codecs with :attr:`spatial_quality` only): the
        quality of each position of y, ``q_milli`` then being the base quality."""
        raise NotImplementedError

    def decode(self, reader: StreamReader, hw: tuple[int, int], q_milli: int,
               tile: int | None = None, qmap: np.ndarray | None = None) -> Tensor:
        """Inverse of :meth:`encode`; ``hw`` is y's size in units of :attr:`downsampling`."""
        raise NotImplementedError

    def _check_qmap(self, qmap: np.ndarray | None) -> None:
        if qmap is not None and not self.spatial_quality:
            raise ValueError(f"{type(self).__name__} cannot code a quality per position")

    @torch.no_grad()
    def compress(self, y: Tensor, q_milli: int, tile: int | None = None,
                 qmap: np.ndarray | None = None) -> tuple[dict[str, bytes], Tensor]:
        """y -> (container streams, the decoder's y_hat)."""
        self._check_qmap(qmap)
        writer = StreamWriter()
        y_hat = self.encode(y, q_milli, writer, tile) if qmap is None else self.encode(y, q_milli, writer, tile, qmap)
        return streams_of(writer), y_hat

    @torch.no_grad()
    def decompress(self, streams: dict[str, bytes], hw: tuple[int, int], q_milli: int,
                   tile: int | None = None, qmap: np.ndarray | None = None) -> Tensor:
        """Inverse of :meth:`compress`: streams -> y_hat."""
        self._check_qmap(qmap)
        reader = reader_of(streams)
        y_hat = self.decode(reader, hw, q_milli, tile) if qmap is None else self.decode(reader, hw, q_milli, tile, qmap)
        reader.finish()
        return y_hat

