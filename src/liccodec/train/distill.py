"""Knowledge distillation from a shipped model (issues 22 and 23).

A model that cannot start as a zero-initialised extension of the default (a lighter
synthesis, another transform family) starts by imitating it: the *teacher*, shipped weights
named by ``TrainConfig.teacher``, runs beside the student on the same crops at the same
quality levels, frozen, in eval mode and without gradients, and the student regresses onto
what it produces. This is cheap, dense supervision; rate-distortion fine-tuning follows by
changing the weights of a recipe between stages, since the student's forward pass is the one
rate-distortion training uses. Per image (then averaged over the batch, as the RD terms are)::

    distill_y       * mean_{c,h,w} (y_s - y_t)^2
    distill_x       * lambda(level) * 255^2 * mean_{c,h,w} (x_hat_s - x_hat_t)^2
    distill_entropy * mean_i [ 0.5 (mu_s,i - mu_t,i)^2 + (log sigma_s,i - log sigma_t,i)^2 ]

``y`` is g_a's output before the gains and quantization (level-independent, so it compares
whatever the two gain tables do). ``x_hat`` is in [0, 1], like the distortion term, and
carries the same lambda, so ``distill_x = 1`` weighs the teacher's reconstruction as
``mse_weight = 1`` weighs the original. The entropy term runs over every element i of y,
comparing the Gaussians that the two entropy models code it with, in the domain where y is
rounded (y * gain; a wavelet codec's bands), where one quantization step is 1; each scale is
lower-bounded as the likelihood bounds it (0.11). It is the Fisher (second-order) expansion
of KL(teacher || student) at sigma = 1 (:func:`gaussian_gap` says why not the KL itself).
``mu``/``sigma`` are recorded from the latent codecs' quantizer
(``liccodec.latent.base.record_gaussians``), so any mean-scale codec qualifies.

FEDS (Fu, Liang, Fang, Han, arXiv 2503.06399) distils a SwinV2 teacher into a light student
in three phases (feature alignment, entropy-weighted channel distillation, fine-tuning). The
three-pass distillation of Fu et al. (arXiv 2309.02529, TIP 2024) retrains a lighter core
decoder and the entropy coding from the teacher's final and intermediate results. Here what is
aligned is the latent and the reconstruction, and the entropy channel is matched element by
element rather than weighted by channel entropy; the phases are recipe stages
(docs/charm.fastkd.stage1.toml, docs/charm.fastkd.stage2.toml).
"""
from __future__ import annotations

import contextlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from liccodec.latent.base import record_gaussians
from liccodec.latent.hyperprior import SCALE_MIN
from liccodec.nn import lower_bound


def _arch_and_config(weights: Path) -> tuple[str, dict]:
    """The architecture and config of shipped weights: their manifest entry, else their metadata."""
    from safetensors import safe_open

    from liccodec.errors import ModelError
    from liccodec.weights import read_manifest

    for spec in read_manifest(weights.parent).values():
        if spec.file == weights.name:
            return spec.arch, dict(spec.config)
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata() or {}
    if "arch" not in meta or "config" not in meta:
        raise ModelError(f"teacher {weights}: neither a manifest entry beside it nor its metadata names "
                         "its architecture and config; export it with `lic export`")
    return meta["arch"], json.loads(meta["config"])


def load_teacher(weights: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, str]:
    """(the teacher, the sha256 of its file): shipped weights read as ``init`` reads them
    (``liccodec.train.warmstart``: a model with a base is assembled from its chain, every file
    verified), into a *training* build of its architecture, whose forward pass estimates the
    rate as the student's does. Frozen and in eval mode: no noise, no gradients."""
    from liccodec.errors import ModelError
    from liccodec.models import get_arch
    from liccodec.train.warmstart import warm_start
    from liccodec.weights import sha256_file

    weights = Path(weights)
    if not weights.is_file():
        raise ModelError(f"teacher {weights}: no such weights file")
    arch, config = _arch_and_config(weights)
    model = get_arch(arch).build(**config)
    fresh = warm_start(model, weights)
    params = {n for n, _ in model.named_parameters()}
    missing = [k for k in fresh if k in params]
    if missing:  # a teacher with random parts would teach noise
        raise ModelError(f"teacher {weights} lacks {len(missing)} of its model's parameters "
                         f"(e.g. {missing[:3]}); a teacher must be complete")
    model.latent.refresh()
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    model.requires_grad_(False)
    return model, sha256_file(weights)


def gaussian_gap(mean_t: Tensor, scale_t: Tensor, mean_s: Tensor, scale_s: Tensor) -> Tensor:
    """Elementwise ``0.5 (mu_s - mu_t)^2 + (log sigma_s - log sigma_t)^2`` (fp32), each scale
    lower-bounded at the likelihood's SCALE_MIN (the student's with the bound's gradient rule).

    That is the second-order expansion of KL(teacher || student) at sigma = 1, one quantization
    step: the KL's own mean term, (mu_s - mu_t)^2 / (2 sigma_t^2), blows up where sigma is far
    below the step (37% of charm.mse's scales are under 0.2 at level 4, 66% at level 1), where
    the two *discrete* distributions barely differ. Zero exactly when both Gaussians are equal."""
    s_t = scale_t.float().clamp_min(SCALE_MIN)
    s_s = lower_bound(scale_s.float(), SCALE_MIN)
    return 0.5 * (mean_s.float() - mean_t.float()).square() + (torch.log(s_s) - torch.log(s_t)).square()


@dataclass
class Targets:
    """What the teacher produced for one batch (only what an active term needs)."""
    y: Tensor | None
    x_hat: Tensor | None
    gaussians: list[tuple[Tensor, Tensor]] | None


def _forward(model: nn.Module, x: Tensor, level: Tensor, captions: list[str] | None):
    if captions is not None and "captions" in inspect.signature(model.forward).parameters:
        return model(x, level, captions=captions)
    return model(x, level)


class Distiller:
    """The teacher and the distillation terms of a run (``TrainConfig.distill_*``)."""

    def __init__(self, cfg, student: nn.Module, device: torch.device):
        self.w_y, self.w_x, self.w_e = cfg.distill_y, cfg.distill_x, cfg.distill_entropy
        self.teacher, self.sha256 = load_teacher(cfg.teacher, device)
        self.name = cfg.teacher
        self._check(student, device)

    def _check(self, student: nn.Module, device: torch.device) -> None:
        """Refuse, before any training, a teacher whose outputs the active terms cannot
        compare with the student's: one tiny forward of both (eval mode, no noise drawn)."""
        from liccodec.errors import UsageError

        t, s = self.teacher, student
        if (self.w_x or self.w_e) and list(t.cfg.lambdas) != list(s.cfg.lambdas):
            raise UsageError(f"distill_x and distill_entropy compare the two models at the same level, so they need "
                             f"the same lambdas: the student has {list(s.cfg.lambdas)}, the teacher "
                             f"{self.name} {list(t.cfg.lambdas)}")
        side = 2 * max(t.downsampling, s.downsampling)
        x = torch.linspace(0, 1, 3 * side * side, device=device).view(1, 3, side, side)
        x = x.contiguous(memory_format=torch.channels_last)
        level = torch.zeros(1, device=device)
        was_training = s.training
        s.eval()
        try:
            with torch.no_grad(), record_gaussians() as g_t:
                out_t = t(x, level)
            with torch.no_grad(), record_gaussians() as g_s:
                out_s = s(x, level)
        finally:
            s.train(was_training)
        if self.w_y and out_s.y.shape != out_t.y.shape:
            raise UsageError(f"distill_y compares the latents y, but the student's has shape {tuple(out_s.y.shape[1:])} "
                             f"and the teacher's ({self.name}) {tuple(out_t.y.shape[1:])} for a {side}x{side} "
                             "crop (channels M, then positions); set distill_y = 0 or use a teacher with the "
                             "student's M and stride")
        if self.w_x and out_s.x_hat.shape != out_t.x_hat.shape:
            raise UsageError(f"distill_x: the student reconstructs {tuple(out_s.x_hat.shape)}, the teacher "
                             f"{tuple(out_t.x_hat.shape)}")
        if self.w_e:
            shapes_s = [tuple(m.shape) for m, _ in g_s]
            shapes_t = [tuple(m.shape) for m, _ in g_t]
            if not shapes_t or shapes_s != shapes_t:
                raise UsageError("distill_entropy compares the Gaussians (mean, scale) that code each element of y, "
                                 "so both latent codecs must be mean-scale ones that model y in the same groups: "
                                 f"the student's {type(s.latent).__name__} gives {len(shapes_s)} groups "
                                 f"{shapes_s[:3]}, the teacher's {type(t.latent).__name__} {len(shapes_t)} "
                                 f"{shapes_t[:3]}; set distill_entropy = 0")

    def recording(self):
        """Context around the student's forward pass: records its Gaussians when the
        entropy term needs them (yields the list, or None)."""
        return record_gaussians() if self.w_e else contextlib.nullcontext(None)

    @torch.no_grad()
    def targets(self, x: Tensor, level: Tensor, captions: list[str] | None = None) -> Targets:
        """The teacher's outputs on the student's batch and levels (call under the same autocast)."""
        with self.recording() as g:
            out = _forward(self.teacher, x, level, captions)
        return Targets(out.y if self.w_y else None, out.x_hat if self.w_x else None, g)

    def loss(self, out, gaussians: list[tuple[Tensor, Tensor]] | None, t: Targets,
             lam: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Per-image weighted sum of the active terms (fp32) and each term's batch mean, unweighted."""
        b = out.x_hat.shape[0]
        total = torch.zeros(b, device=out.x_hat.device)
        log: dict[str, float] = {}
        with torch.autocast(out.x_hat.device.type, enabled=False):
            if self.w_y:
                d = (out.y.float() - t.y.float()).pow(2).flatten(1).mean(1)
                total = total + self.w_y * d
                log["distill_y"] = d.mean().item()
            if self.w_x:
                d = (out.x_hat.float() - t.x_hat.float()).pow(2).flatten(1).mean(1)
                total = total + self.w_x * lam * 255.0**2 * d
                log["distill_x"] = d.mean().item()
            if self.w_e:
                gap = torch.cat([gaussian_gap(mt, st, ms, ss).flatten(1)
                                 for (mt, st), (ms, ss) in zip(t.gaussians, gaussians)], dim=1).mean(1)
                total = total + self.w_e * gap
                log["distill_entropy"] = gap.mean().item()
        return total, log
