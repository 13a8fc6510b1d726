"""Encoder-side latent refinement: a slower encode that writes a better file for the same decoder.

The analysis transform is a fast, amortised guess at the latent that minimises
``rate + lambda * distortion`` for the image. Refinement improves that guess for this one image
by gradient descent on the model's own rate-distortion loss, then codes the refined latent
exactly as the plain encoder would. Nothing in the format or the decoder changes: a refined
file is an ordinary ``.lic`` file, decoded as fast and as exactly as any other.

The method follows Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression"
(NeurIPS 2020): rounding is relaxed by stochastic Gumbel annealing (SGA), which draws the
floor or the ceiling of each value with odds set by its distance to them, softened by a
temperature that falls toward zero as the steps run, so that the last steps see almost the
hard rounding that coding applies. Campos et al. ("Content adaptive optimization for neural
image compression", CVPR workshops 2019) showed the same idea with additive noise, which
measured worse here (docs/refine.md).

What is refined is y, the analysis output (before the gains). The hyper-latent follows it
(z = h_a(y), as in coding), so the optimisation sees the rate of both. Every latent codec
whose training forward goes through ``latent.hyperprior._quantize_y`` and the gained z path
is refined through :func:`latent.hyperprior.soft_rounding`; the loss needs the float
hyper-synthesis and slice networks, so the model is built for training from the shipped
weights (``train.distill.load_teacher``).

Big images are refined window by window (:data:`WINDOW` latent positions, :data:`MARGIN` of
context on each side), so memory stays that of a ~1 Mpx image; the coding afterwards is of
the whole latent, as always.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor

from liccodec.fixedpoint import level_of_quality

#: Adam's step size on y (cosine-decayed to zero over the steps), and SGA's first temperature.
LR = 0.05
TAU0 = 0.5
#: Windows of y (positions; 16 pixels each) refined at a time, and the context around them.
WINDOW = 48
MARGIN = 4


class GumbelAnnealing:
    """Stochastic Gumbel annealing of rounding at temperature ``tau``: ``v`` goes to its
    floor or its ceiling, with logits ``-atanh(distance) / tau``, relaxed by a Gumbel-softmax
    (Yang et al. 2020). The noise comes from ``generator``, so a refinement is repeatable."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.tau = TAU0

    def _gumbel(self, like: Tensor) -> Tensor:
        u = torch.rand(like.shape, generator=self.generator, dtype=like.dtype).clamp_(1e-9, 1.0)
        return -torch.log(-torch.log(u))

    def __call__(self, v: Tensor) -> Tensor:
        floor = torch.floor(v).detach()
        r = (v - floor).clamp(1e-4, 1 - 1e-4)
        to_floor = -torch.atanh(r) / self.tau + self._gumbel(v)
        to_ceil = -torch.atanh(1 - r) / self.tau + self._gumbel(v)
        return floor + torch.sigmoid(to_ceil - to_floor)


def _loss(model, y: Tensor, x: Tensor, level: Tensor, lam: Tensor) -> Tensor:
    """``bpp + lambda * 255^2 * MSE`` of one forward pass under soft rounding (the training
    loss's form; the synthesis in bf16 under autocast, the entropy model in fp32). ``x`` is
    the window's part of the image without the padding, which ``x_hat`` may extend past."""
    out = model.latent(y, level)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_hat = model.g_s(out.y_hat.contiguous(memory_format=torch.channels_last))
    h, w = x.shape[-2:]
    bits = sum(-torch.log2(lik.float()).sum() for lik in out.likelihoods.values())
    mse = ((x_hat[:, :, :h, :w].float() - x) ** 2).mean()
    return bits / (h * w) + lam * 255.0**2 * mse


def _refine_window(model, y: Tensor, x: Tensor, level: Tensor, steps: int, generator: torch.Generator,
                   tick: Callable[[], None]) -> Tensor:
    from liccodec.latent.hyperprior import soft_rounding

    lam = model.lambda_at(level)
    y = y.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=LR)
    rounding = GumbelAnnealing(generator)
    with soft_rounding(rounding):
        for t in range(steps):
            rounding.tau = TAU0 * math.exp(-3.0 * t / steps)
            for group in opt.param_groups:
                group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * t / steps))
            loss = _loss(model, y, x, level, lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tick()
    return y.detach()


def windows(h: int, w: int, align: int) -> list[tuple[slice, slice, slice, slice]]:
    """Cover an (h, w) latent with cores of :data:`WINDOW` positions: per core, (rows, cols) of
    its window (the core plus up to :data:`MARGIN` on each side, edges on multiples of
    ``align``) and (rows, cols) of the core inside that window."""
    def spans(n: int) -> list[tuple[int, int, int, int]]:
        out = []
        for a in range(0, n, WINDOW):
            b = min(n, a + WINDOW)
            lo = max(0, (a - MARGIN) // align * align)
            hi = min(n, -(-(b + MARGIN) // align) * align)
            out.append((lo, hi, a - lo, b - lo))
        return out
    return [(slice(r0, r1), slice(c0, c1), slice(a0, a1), slice(b0, b1))
            for r0, r1, a0, a1 in spans(h) for c0, c1, b0, b1 in spans(w)]


def refine_latent(model, x: Tensor, y: Tensor, q_milli: int, steps: int, seed: int = 0,
                  progress: Callable[[int], None] | None = None) -> Tensor:
    """The latent of the image ``x`` (1, 3, H, W) in [0, 1], unpadded, after ``steps`` steps of
    refinement from ``y`` (the analysis output of the padded image) at quality ``q_milli``.
    ``model`` is a training build (``load_refiner``); ``progress(n)`` is called with the number
    of steps done so far. The padding is not part of the distortion: the decoder crops it."""
    if steps <= 0:
        return y
    stride = model.y_stride
    level = torch.full((1,), level_of_quality(q_milli))
    generator = torch.Generator().manual_seed(seed)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done)

    y = y.detach().float().clone()
    for rows, cols, core_r, core_c in windows(y.shape[-2], y.shape[-1], model.latent.downsampling):
        pix = (slice(rows.start * stride, rows.stop * stride), slice(cols.start * stride, cols.stop * stride))
        refined = _refine_window(model, y[:, :, rows, cols], x[:, :, pix[0], pix[1]], level, steps, generator, tick)
        y[:, :, rows, cols][:, :, core_r, core_c] = refined[:, :, core_r, core_c]
    return y


def total_steps(y_hw: tuple[int, int], steps: int, align: int) -> int:
    """Forward-backward passes a refinement of ``steps`` takes on a latent of ``y_hw`` (for a
    progress bar): ``steps`` per window."""
    return steps * len(windows(*y_hw, align))


@lru_cache(maxsize=2)
def load_refiner(spec) -> torch.nn.Module:
    """``spec``'s shipped model (a ``weights.WeightSpec``) built for training (float entropy
    networks), its weights verified by sha256, frozen, in eval mode."""
    from liccodec.train.distill import load_teacher
    from liccodec.weights import verify

    verify(spec)
    model, _ = load_teacher(spec.path)
    return model
