"""The training loop: resumable, bf16 transforms on CPU, fp32 entropy math, EMA weights.

A run lives in one folder (``TrainConfig.out``): ``recipe.toml``, ``last.pt`` (full
resumable state), ``train.jsonl`` and ``val.jsonl``. Kill it at any moment and
``--resume`` continues from the last checkpoint to the same result an uninterrupted run
would give (same crops, same noise, same updates), on the same device and thread count.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.eval.metrics import psnr_from_mse
from liccodec.models import get_arch
from liccodec.train.config import Recipe
from liccodec.train.data import CropSampler, list_images, load_rgb, read_captions


def latent_bits(likelihoods: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-image bits of each named latent, fp32."""
    return {k: (-torch.log2(lik.float())).flatten(1).sum(1) for k, lik in likelihoods.items()}


def weighted_rate(likelihoods: dict[str, Tensor], weights: dict[str, float]) -> tuple[Tensor, dict[str, float]]:
    """Per-image bits with ``latent_rate_weights``' weights (keys: a latent's name, or a name
    with a channel range, which overrides the whole latent's weight on those channels), and
    the mean bits of each key's part, for the log."""
    from liccodec.train.config import rate_key

    parts = {key: rate_key(key) for key in weights}
    unknown = sorted({name for name, _, _ in parts.values()} - set(likelihoods))
    if unknown:
        raise ValueError(f"latent_rate_weights names {unknown}, but this model's latents are {sorted(likelihoods)}")
    total, logged = 0, {}
    for name, lik in likelihoods.items():
        whole = weights.get(name, 1.0)
        ranges = [(key, a, b) for key, (n, a, b) in parts.items() if n == name and a is not None]
        if not ranges:
            bits = (-torch.log2(lik.float())).flatten(1).sum(1)
            total = total + whole * bits
            if name in weights:
                logged[name] = bits.mean().item()
            continue
        per_channel = (-torch.log2(lik.float())).flatten(2).sum(2)  # (B, C)
        w = torch.full((per_channel.shape[1],), float(whole), device=per_channel.device)
        for key, a, b in ranges:
            w[a:b] = weights[key]
            logged[key] = per_channel[:, a:b].sum(1).mean().item()
        if name in weights:
            logged[name] = per_channel.sum(1).mean().item()
        total = total + (per_channel * w).sum(1)
    return total, logged


def rd_terms(model: nn.Module, x: Tensor, level: Tensor, captions: list[str] | None = None):
    """Per-image (bpp, mse) of one forward pass, both fp32 (``captions``: one per image, for a
    model conditioned on them)."""
    out = model(x, level) if captions is None else model(x, level, captions=captions)
    bpp = sum(latent_bits(out.likelihoods).values()) / (x.shape[2] * x.shape[3])
    mse = (out.x_hat.float() - x.float()).pow(2).flatten(1).mean(1)
    return bpp, mse, out


def psnr(mse: float) -> float:
    """PSNR in dB of an MSE of images in [0, 1]."""
    return psnr_from_mse(max(mse, 1e-12), peak=1.0)


def resolve_amp(device: torch.device, amp: str) -> str:
    """ "auto" means bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else
    "none": emulated bf16 on an AVX2-only CPU ran ~30x *slower* than fp32 here."""
    if amp == "auto":
        from liccodec.nn.layers import native_bf16

        return "bf16" if device.type == "cuda" or native_bf16() else "none"
    if amp not in ("bf16", "none"):
        raise ValueError(f"amp must be auto, bf16 or none, not {amp!r}")
    return amp


def _autocast(device: torch.device, amp: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=(amp == "bf16"))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """A training checkpoint, loaded without running code from it.

    ``weights_only=True`` unpickles tensors and plain data only (what :meth:`Trainer.checkpoint`
    writes: dicts, lists, numbers, strings; numpy's generator state is a dict of ints), so a
    hostile ``.pt`` file can raise an error but never execute anything."""
    import pickle

    from liccodec.errors import UsageError

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UsageError(f"{path} holds more than tensors and plain data; refusing to load it "
                         f"(weights_only): {str(e).splitlines()[0]}") from e


@dataclass
class TrainState:
    step: int = 0
    wall: float = 0.0           # seconds spent training, summed over resumed runs


class Trainer:
    def __init__(self, recipe: Recipe, device: str | None = None):
        self.recipe = recipe
        self.cfg = recipe.train
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.amp = resolve_amp(self.device, self.cfg.amp)
        torch.manual_seed(self.cfg.seed)
        spec = get_arch(recipe.arch)
        self.model = spec.build(**recipe.model)
        fresh: list[str] = []
        if self.cfg.init:
            from liccodec.train.warmstart import warm_start

            fresh = warm_start(self.model, self.cfg.init, tuple(self.cfg.reinit), self.cfg.grow, self.cfg.grow_live)
            print(f"warm start from {self.cfg.init}; freshly initialised: "
                  f"{sorted({k.rsplit('.', 1)[0] for k in fresh})}", file=sys.stderr)
        self.model = self.model.to(self.device).to(memory_format=torch.channels_last)
        if self.cfg.init:
            self.solve_quantiles()
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        frozen = tuple(self.cfg.freeze)
        for n, p in self.model.named_parameters():
            if n.startswith(frozen):
                p.requires_grad_(False)
        # the latent codec's own auxiliary parameters get their own optimizer (its aux_loss)
        aux_ids = {id(p) for p in self.model.latent.aux_parameters()}
        main = [p for p in self.model.parameters() if p.requires_grad and id(p) not in aux_ids]
        aux = [p for p in self.model.parameters() if p.requires_grad and id(p) in aux_ids]
        if not main:
            raise ValueError(f"freeze={list(frozen)} leaves nothing to train")
        # held in eval mode on every step (no training noise, running statistics untouched)
        self.frozen_modules = [m for n, m in self.model.named_modules()
                               if n and n.startswith(tuple(f.rstrip(".") for f in frozen))]
        groups = [{"params": main, "lr_scale": 1.0}]
        if self.cfg.fresh_lr_scale != 1.0:
            fresh_ids = {id(p) for n, p in self.model.named_parameters() if n in set(fresh)}
            groups = [{"params": [p for p in main if id(p) not in fresh_ids], "lr_scale": 1.0},
                      {"params": [p for p in main if id(p) in fresh_ids], "lr_scale": self.cfg.fresh_lr_scale}]
        self.opt = torch.optim.Adam(groups, lr=self.cfg.lr)
        self.aux_opt = torch.optim.Adam(aux, lr=self.cfg.aux_lr) if aux else None
        self.perceptual = self.disc_opt = None
        if self.cfg.lpips > 0 or self.cfg.adversarial > 0:
            from liccodec.train.perceptual import PerceptualTerms

            self.perceptual = PerceptualTerms(self.cfg.lpips, self.cfg.lpips_net, self.cfg.adversarial,
                                              self.cfg.disc_width, self.cfg.disc,
                                              getattr(self.model.cfg, "M", 192)).to(self.device)
            if self.perceptual.disc is not None:
                self.disc_opt = torch.optim.Adam(self.perceptual.disc.parameters(), lr=self.cfg.disc_lr,
                                                 betas=(0.5, 0.999))
        self.distiller = None
        if self.cfg.distilling:
            from liccodec.train.distill import Distiller

            # built last: the student is final, and the teacher is no part of the optimizer or the EMA
            self.distiller = Distiller(self.cfg, self.model, self.device)
            print(f"teacher: {self.cfg.teacher} (sha256 {self.distiller.sha256[:16]}...), frozen", file=sys.stderr)
        self.data = CropSampler(self.cfg.data, self.cfg.seed, holdout=self.cfg.holdout,
                                captions=read_captions(self.cfg.captions) if self.cfg.captions else None)
        self.state = TrainState()
        self.out = Path(self.cfg.out)

    # ---- persistence -------------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {
            "recipe": self.recipe.to_dict(),
            "state": vars(self.state),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict() if self.aux_opt is not None else None,
            "disc": self.perceptual.disc.state_dict() if self.disc_opt is not None else None,
            "disc_opt": self.disc_opt.state_dict() if self.disc_opt is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "data_rng": self.data.state(),
            # the teacher itself is not saved: a resume rebuilds it from its file, which must not have changed
            "teacher_sha256": self.distiller.sha256 if self.distiller is not None else None,
        }

    def save(self, name: str = "last.pt") -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / name
        tmp = path.with_suffix(".tmp")
        torch.save(self.checkpoint(), tmp)
        os.replace(tmp, path)
        return path

    def load(self, path: str | Path) -> None:
        ck = load_checkpoint(path, self.device)
        was = ck.get("teacher_sha256")
        if self.distiller is not None and was is not None and was != self.distiller.sha256:
            from liccodec.errors import UsageError

            raise UsageError(f"{path} was trained against a teacher with sha256 {was[:16]}..., but "
                             f"{self.cfg.teacher} now has {self.distiller.sha256[:16]}...; a resumed run "
                             "would not continue the same one (start a new run from an export instead)")
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"])
        torch.set_rng_state(ck["torch_rng"])
        if self.aux_opt is not None:
            self.aux_opt.load_state_dict(ck["aux_opt"])
        if self.disc_opt is not None:
            self.perceptual.disc.load_state_dict(ck["disc"])
            self.disc_opt.load_state_dict(ck["disc_opt"])
        if ck.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        self.data.set_state(ck["data_rng"])
        self.state = TrainState(**ck["state"])

    # ---- one step ----------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        model.train()
        for m in self.frozen_modules:
            m.eval()
        lr = cfg.lr_at(self.state.step)
        for g in self.opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        captions = None
        if self.data.captions is not None:
            x, captions = self.data.captioned_batch(cfg.batch, cfg.patch_at(self.state.step))
        else:
            x = self.data.batch(cfg.batch, cfg.patch_at(self.state.step))
        x = x.to(self.device)
        levels = model.cfg.levels
        level = cfg.level_of(torch.rand(x.shape[0], device=self.device), levels)
        targets = gaussians = None
        with _autocast(self.device, self.amp):
            if self.distiller is not None:
                targets = self.distiller.targets(x, level, captions)
                with self.distiller.recording() as gaussians:
                    bpp, mse, out = rd_terms(model, x, level, captions)
            else:
                bpp, mse, out = rd_terms(model, x, level, captions)
        lam = model.lambda_at(level)
        dist = cfg.mse_weight * lam * 255.0**2 * mse
        extra: dict[str, float] = {}
        if self.distiller is not None:
            d_loss, extra = self.distiller.loss(out, gaussians, targets, lam)
            dist = dist + d_loss
        context = None
        if self.perceptual is not None:
            with _autocast(self.device, self.amp):
                context = self.perceptual.context(x, out.y_hat)
                p_loss, p_log = self.perceptual.generator(x, out.x_hat, self.state.step >= cfg.disc_start,
                                                          context)
            dist = dist + p_loss
            extra.update(p_log)
        rate = bpp
        weights = cfg.latent_rate_weights_at(self.state.step)
        if weights:
            rate, logged = weighted_rate(out.likelihoods, weights)
            n_pix = x.shape[2] * x.shape[3]
            rate = rate / n_pix
            extra.update({f"bpp_{k}": v / n_pix for k, v in logged.items()})
        reg = model.regularizer(out)
        if reg is not None:
            dist = dist + reg.float()
            extra["reg"] = reg.mean().item()
        loss = (dist + cfg.bpp_weight * cfg.rate_weight(bpp, level, levels) * rate).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], cfg.clip)
        self.opt.step()
        if self.disc_opt is not None:
            with _autocast(self.device, self.amp):
                d_loss = self.perceptual.discriminator_loss(x, out.x_hat, context)
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
            extra["d_adv"] = d_loss.item()
        aux = model.latent.aux_loss()
        if self.aux_opt is not None:
            self.aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            self.aux_opt.step()
        if cfg.solve_quantiles_every and self.state.step % cfg.solve_quantiles_every == 0:
            self.solve_quantiles()
        self._update_ema()
        self.state.step += 1
        return {"loss": loss.item(), "bpp": bpp.mean().item(), "mse": mse.mean().item(),
                "aux": aux.item(), "lr": lr, **extra}

    def solve_quantiles(self) -> None:
        """Let the latent codec set its closed-form training state (the z prior's quantiles)."""
        self.model.latent.refresh()

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.cfg.ema_at(self.state.step)
        # one fused call: a Python loop over hundreds of parameters costs a launch each on a GPU
        torch._foreach_lerp_(list(self.ema.parameters()), [p.detach() for p in self.model.parameters()], 1 - d)
        for be, b in zip(self.ema.buffers(), self.model.buffers()):
            be.copy_(b)

    # ---- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Kodak-style validation of the EMA weights: rate estimate *and* real coded bytes.

        The real path exports the EMA weights exactly as `lic` ships them (integer
        hyper-synthesis, tables) and codes every image into a complete .lic container.
        """
        from liccodec.container import DIGEST_BYTES, Header, pack
        from liccodec.imageio import pad_to_multiple, to_tensor

        paths = list_images(self.cfg.val_data)[: self.cfg.val_images]
        coder = get_arch(self.recipe.arch).build(inference=True, **self.recipe.model).to(self.device)
        coder.load_tensors({k: v.cpu() for k, v in self.ema.export_tensors().items()})
        coder.eval()
        res = {}
        for lv in self.cfg.val_levels:
            q_milli = coder.quality_milli(lv)
            est, real, p_est, p_real = [], [], [], []
            for p in paths:
                rgb = load_rgb(p)
                x = to_tensor(rgb).to(self.device)
                h, w = x.shape[2:]
                xp = pad_to_multiple(x, self.ema.downsampling)
                with _autocast(self.device, self.amp):
                    out = self.ema(xp.contiguous(memory_format=torch.channels_last),
                                   torch.full((1,), lv, device=self.device))
                bits = sum((-torch.log2(l.float())).sum() for l in out.likelihoods.values())
                xh = out.x_hat.float()[:, :, :h, :w].clamp(0, 1)
                est.append(bits.item() / (h * w))
                p_est.append(psnr(((xh - x) ** 2).mean().item()))
                precision = "bf16" if self.amp == "bf16" else "fp32"
                streams = coder.compress(xp, q_milli, precision)
                data = pack(Header(self.recipe.arch + ".val", bytes(DIGEST_BYTES), w, h, quality=q_milli), streams)
                xr = coder.decompress(streams, xp.shape[2:], q_milli, precision)[:, :, :h, :w]
                xr = torch.round(xr * 255) / 255  # what a decoded 8-bit file holds
                real.append(8 * len(data) / (h * w))
                p_real.append(psnr(((xr.cpu() - x.cpu()) ** 2).mean().item()))
            lam = float(self.model.lambda_at(torch.tensor([float(lv)]))[0])
            res[f"level{lv:g}"] = {"lambda": round(lam, 6), "bpp_est": float(np.mean(est)), "psnr_est": float(np.mean(p_est)),
                                   "bpp": float(np.mean(real)), "psnr": float(np.mean(p_real))}
        return res

    # ---- the loop ----------------------------------------------------------------------
    def run(self, max_minutes: float | None = None, progress: bool = True) -> None:
        from tqdm import tqdm

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "recipe.json").write_text(json.dumps(self.recipe.to_dict(), indent=1))
        t_start = time.time()
        last_ckpt = time.time()
        acc: dict[str, list[float]] = {}
        t_seg = time.time()
        tty = sys.stderr.isatty()
        bar = tqdm(total=cfg.steps, initial=self.state.step, disable=not progress,
                   mininterval=1 if tty else 60, dynamic_ncols=True, desc="train")
        with open(self.out / "train.jsonl", "a") as log, open(self.out / "val.jsonl", "a") as vlog:
            while self.state.step < cfg.steps:
                t0 = time.time()
                m = self.step()
                self.state.wall += time.time() - t0
                for k, v in m.items():
                    acc.setdefault(k, []).append(v)
                bar.update(1)
                s = self.state.step
                if s % cfg.log_every == 0:
                    rec = {k: float(np.mean(v)) for k, v in acc.items()}
                    rec["psnr"] = psnr(rec["mse"])
                    rec.update(step=s, wall=round(self.state.wall, 1),
                               s_per_step=(time.time() - t_seg) / len(acc["loss"]),
                               patch=cfg.patch_at(s - 1))
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", bpp=f"{rec['bpp']:.3f}",
                                    psnr=f"{rec['psnr']:.2f}")
                    acc, t_seg = {}, time.time()
                if cfg.val_every and s % cfg.val_every == 0:
                    v = {"step": s, "wall": round(self.state.wall, 1), **self.validate()}
                    vlog.write(json.dumps(v) + "\n")
                    vlog.flush()
                    bar.write(f"val step {s}: {json.dumps(v)}")
                if s in cfg.keep_steps:
                    self.save(f"step-{s}.pt")
                if time.time() - last_ckpt > cfg.ckpt_every_s:
                    self.save()
                    last_ckpt = time.time()
                if max_minutes is not None and time.time() - t_start > max_minutes * 60:
                    bar.write(f"time budget of {max_minutes} min reached at step {s}")
                    break
        self.save()
        bar.close()
