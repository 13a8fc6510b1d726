"""Training configuration, loadable from TOML.

A recipe file has a ``[model]`` table (``arch`` plus that architecture's config fields)
and a ``[train]`` table (the fields of :class:`TrainConfig`).
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


@dataclass
class TrainConfig:
    data: str = "../shared/data/train"
    val_data: str = "../shared/data/kodak"
    out: str = "../runs/default"          # checkpoints and logs; keep outside git
    seed: int = 0
    # hold out every k-th photo of ``data`` (sorted by path) from training (0: none);
    # liccodec.train.data.split_holdout names them, for validation on unseen photos
    holdout: int = 0
    # captions of the training photos: a JSON file of file name -> caption (as
    # docs/data/captions-train.json); "" = none. When set, only captioned photos are sampled and
    # each crop's caption goes to the model (an architecture whose forward takes captions: selic)
    captions: str = ""
    # shipped weights (.safetensors beside a manifest.json) to start from; "" = from scratch
    init: str = ""
    # parameter-name prefixes that ``init`` may leave fresh where their shapes differ
    # (e.g. ["g_s."] to give a warm-started model a new, narrower synthesis)
    reinit: list[str] = field(default_factory=list)
    # let ``init``'s tensors grow into wider layers of the same names (a config with more
    # latent channels M): the new channels start so that step 0 computes what ``init`` did
    # (liccodec.train.warmstart.grow)
    grow: bool = False
    # with ``grow``, > 0 starts grown latent channels live instead: g_a's new outputs keep their
    # random initial weights, so y's new channels carry values from step 0, and h_s's new scales
    # start at this raw output; g_s and h_a read them through zero weights, so step 0 still draws
    # what ``init`` drew. 0 is the zero start, whose new channels never came alive
    # (docs/training-history.md, sessions 26-27)
    grow_live: float = 0.0
    # learning-rate factor for the parameters ``init`` does not provide (new, zero-initialised
    # blocks of an extended architecture), so they catch up with the warm-started ones
    fresh_lr_scale: float = 1.0
    # module-name prefixes held fixed: no gradients, always in eval mode (e.g. ["g_a.", "latent."]
    # trains the synthesis alone behind the frozen encoder and entropy model)
    freeze: list[str] = field(default_factory=list)
    batch: int = 8
    # [[step, patch], ...]: crop side from that step on (a curriculum of crop sizes)
    patch_schedule: list[list[int]] = field(default_factory=lambda: [[0, 128]])
    steps: int = 100_000                  # total optimizer steps
    lr: float = 1e-3
    warmup: int = 1000
    decay_start: int = 80_000             # constant lr until here, then cosine to lr_min
    lr_min: float = 1e-5
    aux_lr: float = 1e-3
    solve_quantiles_every: int = 100      # exact z-prior quantiles every N steps (0 = aux loss only)
    clip: float = 1.0
    # quality levels are drawn as u**level_power * (levels - 1), u uniform in [0, 1):
    # 1 is uniform, below 1 draws the high-rate levels more often
    level_power: float = 1.0
    ema: float = 0.999
    amp: str = "auto"                     # "auto" (bf16 where native), "bf16" or "none"
    ckpt_every_s: float = 300.0
    # steps at which a copy of the checkpoint is kept as step-<N>.pt beside last.pt, e.g. to
    # measure a run at the step count of an earlier one
    keep_steps: list[int] = field(default_factory=list)
    log_every: int = 50
    val_every: int = 2000
    val_levels: list[float] = field(default_factory=lambda: [1.0, 4.0])
    val_images: int = 24
    # perceptual fine-tuning (liccodec.train.perceptual); a weight of 0 turns its term off
    mse_weight: float = 1.0               # factor on the lambda-weighted squared error
    lpips: float = 0.0                    # weight of LPIPS(lpips_net) between x and x_hat
    lpips_net: str = "alex"
    adversarial: float = 0.0              # weight of the generator's relativistic PatchGAN loss
    disc: str = "patch"                   # "patch": plain PatchGAN; "semantic": ICISP's, conditioned
                                          # on VGG16 features of the original and on y_hat
    disc_width: int = 32                  # the discriminator's first width (then 2x, 4x, 4x or 8x)
    disc_lr: float = 1e-4
    disc_start: int = 0                   # the discriminator trains from step 0; it judges the
                                          # generator from this step on
    # rate-switched rate weight (PO-DKIC's eq. 2, HiFiC's lambda'): an image's bpp is weighted
    # rate_weight_above where it exceeds the target bpp of its level, else rate_weight_below.
    # rate_target: one bpp per trained level (fractional levels interpolate geometrically) or
    # one for all; [] = off (weight 1). It acts through what shapes the rate, g_a and the latent
    # codec: with both frozen (a synthesis-only fine-tune) it changes nothing.
    rate_target: list[float] = field(default_factory=list)
    rate_weight_above: float = 2.0
    rate_weight_below: float = 0.125
    # factor on the whole rate term (bits per pixel, after rate_target's weights); 0 turns it
    # off, e.g. for a pure distillation stage whose encoder is not to care about the rate yet
    bpp_weight: float = 1.0
    # weights of the rate of named latents (the keys of the model's likelihoods), each a
    # schedule [[step, weight], ...]: the weight from that step on, 1 before the first entry and
    # for every latent not named. E.g. weconv3d's "y_lf" and "y_hf" (its low and high wavelet
    # bands): 3DM-WeConvene's two-step LF/HF rate training (docs/models/weconv3d.md). The
    # logged bpp stays the real one; bpp_<name> logs each named latent's. A name may end in a
    # channel range, "y[192:]" or "y[0:64]": that weight is for those channels of the latent
    # alone (over the latent's own weight), e.g. to let a grown latent's new channels start
    # free of the rate term (docs/charm.hi320.toml).
    latent_rate_weights: dict[str, list[list[float]]] = field(default_factory=dict)
    # knowledge distillation (liccodec.train.distill; docs/training.md, "Distillation"): shipped
    # weights (.safetensors, read as ``init`` reads them, bases included) that run frozen, in
    # eval mode and without gradients, on the same crops at the same levels as the student.
    # Loaded only while a distill weight is > 0; never saved in checkpoints (a resume rebuilds
    # it and checks its sha256). "" = none. Each weight of 0 turns its term off:
    teacher: str = ""
    distill_y: float = 0.0        # MSE between the student's y and the teacher's (g_a's outputs)
    distill_x: float = 0.0        # lambda(level) * 255^2 * MSE between the two x_hat, in [0, 1]
    distill_entropy: float = 0.0  # mean 0.5 (mu_s - mu_t)^2 + (log sigma_s - log sigma_t)^2 of the
                                  # Gaussians that code y (the KL to second order; mean-scale codecs)

    def patch_at(self, step: int) -> int:
        patch = self.patch_schedule[0][1]
        for start, p in self.patch_schedule:
            if step >= start:
                patch = p
        return patch

    def override(self, items: Iterable[str]) -> None:
        """Apply ``key=value`` overrides, each value in TOML syntax."""
        known = {f.name: f for f in dataclasses.fields(self)}
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ValueError(f"{item!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
            try:
                parsed = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                parsed = value  # a bare string
            setattr(self, key, parsed)
        self.__post_init__()

    def __post_init__(self) -> None:
        if not self.level_power > 0:
            raise ValueError(f"level_power must be > 0, got {self.level_power}")
        if self.lpips < 0 or self.adversarial < 0 or self.mse_weight < 0:
            raise ValueError("mse_weight, lpips and adversarial must be >= 0")
        if any(not t > 0 for t in self.rate_target) or self.rate_weight_above < 0 or self.rate_weight_below < 0:
            raise ValueError("rate_target must be > 0 and the rate weights >= 0")
        if self.bpp_weight < 0 or min(self.distill_y, self.distill_x, self.distill_entropy) < 0:
            raise ValueError("bpp_weight and the distill weights must be >= 0")
        for name, schedule in self.latent_rate_weights.items():
            rate_key(name)
            steps = [e[0] for e in schedule] if all(isinstance(e, list) and len(e) == 2 for e in schedule) else None
            if not schedule or steps is None or steps != sorted(steps) or any(w < 0 for _, w in schedule):
                raise ValueError(f"latent_rate_weights.{name} must be [[step, weight], ...] with ascending "
                                 f"steps and weights >= 0, got {schedule!r}")
        if self.grow_live < 0 or (self.grow_live and not self.grow):
            raise ValueError("grow_live must be >= 0, and > 0 only with grow = true")
        if self.distilling and not self.teacher:
            raise ValueError("distill_y, distill_x and distill_entropy need a teacher (teacher = \"<weights>.safetensors\")")

    @property
    def distilling(self) -> bool:
        """Whether a distillation term is on (then the teacher runs)."""
        return max(self.distill_y, self.distill_x, self.distill_entropy) > 0

    def rate_weight(self, bpp, level, levels: int):
        """Per-image weight of the rate term (tensors of shape (B,)); see ``rate_target``."""
        import torch

        if not self.rate_target:
            return torch.ones_like(bpp)
        if len(self.rate_target) not in (1, levels):
            raise ValueError(f"rate_target has {len(self.rate_target)} values; give 1 or one per level ({levels})")
        log_t = torch.log(torch.tensor(self.rate_target, dtype=torch.float32, device=bpp.device))
        top = len(self.rate_target) - 1
        pos = level.float().clamp(0, top)
        lo = pos.floor().long().clamp(max=max(top - 1, 0))
        hi = (lo + 1).clamp(max=top)
        target = torch.exp(log_t[lo] + (pos - lo) * (log_t[hi] - log_t[lo]))
        return torch.where(bpp.detach() > target, self.rate_weight_above, self.rate_weight_below).to(bpp.dtype)

    def latent_rate_weights_at(self, step: int) -> dict[str, float]:
        """The weight of each named latent's rate at ``step`` (``latent_rate_weights``)."""
        out = {}
        for name, schedule in self.latent_rate_weights.items():
            out[name] = 1.0
            for start, w in schedule:
                if step >= start:
                    out[name] = float(w)
        return out

    def ema_at(self, step: int) -> float:
        """The EMA's decay after step ``step`` (0-based): ``ema``, warmed up as (1 + step) /
        (10 + step) while that is smaller. With a constant 0.999 the weights a run starts from
        keep 0.999**steps of the average (13.5% after 2,000 steps, 5% after 3,000), which ruins
        the EMA of a freshly initialised part in a short run (session 19: a fresh synthesis
        validated at 22.6 dB after 2,000 steps, its raw weights near 28). With the warm-up,
        they keep less than 1e-20 after 2,000 steps."""
        return min(self.ema, (1 + step) / (10 + step))

    def level_of(self, u, levels: int):
        """Map uniform draws u in [0, 1) (a tensor or array) to continuous quality levels."""
        return u**self.level_power * (levels - 1)

    def lr_at(self, step: int) -> float:
        import math

        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if step < self.decay_start:
            return self.lr
        span = max(self.steps - self.decay_start, 1)
        t = min((step - self.decay_start) / span, 1.0)
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * t))


_RATE_KEY = re.compile(r"^(\w+)(?:\[(\d*):(\d*)\])?$")


def rate_key(key: str) -> tuple[str, int | None, int | None]:
    """A ``latent_rate_weights`` key: (latent name, first channel, end channel), the two
    None for the whole latent ("y"); "y[192:]" gives ("y", 192, None)."""
    m = _RATE_KEY.match(key)
    if m is None or (m.group(2) is not None and m.group(2) == m.group(3) == ""):
        raise ValueError(f"latent_rate_weights: {key!r} is not a latent's name, optionally with a channel "
                         f"range such as y[192:]")
    if m.group(2) is None:
        return m.group(1), None, None
    start = int(m.group(2) or 0)
    stop = int(m.group(3)) if m.group(3) else None
    if stop is not None and stop <= start:
        raise ValueError(f"latent_rate_weights: {key!r} names no channel")
    return m.group(1), start, stop


@dataclass
class Recipe:
    arch: str
    model: dict[str, Any]
    train: TrainConfig

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Recipe":
        model = dict(raw.get("model", {}))
        arch = model.pop("arch", "msh")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        train_raw = raw.get("train", {})
        unknown = set(train_raw) - known
        if unknown:
            raise ValueError(f"unknown [train] keys: {sorted(unknown)}")
        return cls(arch, model, TrainConfig(**train_raw))

    def to_dict(self) -> dict[str, Any]:
        return {"model": {"arch": self.arch, **self.model}, "train": dataclasses.asdict(self.train)}
