"""Mean-scale hyperprior image codec (Minnen et al., NeurIPS 2018, without context model).

    x --g_a--> y --[GainedHyperprior]--> y_hat --g_s--> x_hat

``g_a``/``g_s`` are the GDN transforms of Balle et al. (ICLR 2018); see
``liccodec.latent.hyperprior`` for the entropy model and the gain units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from liccodec.latent.hyperprior import GainedHyperprior
from liccodec.models.registry import register_arch
from liccodec.nn import GDN, conv, deconv, transform_precision
from liccodec.tiling import Geometry, TilePolicy, run_tiled

# CompressAI's MSE lambdas for its qualities 1..7 (distortion = lambda * 255^2 * MSE).
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)
# Shipped tensors that coding does not read (see MeanScaleHyperprior.export_tensors).
REFERENCE_ONLY = "latent.entropy_bottleneck."


@dataclass
class MshConfig:
    N: int = 128
    M: int = 192
    lambdas: tuple[float, ...] = field(default_factory=lambda: DEFAULT_LAMBDAS)
    # widths of g_s's three hidden layers; () = (N, N, N). A narrower synthesis decodes
    # faster and can be trained behind a frozen encoder and entropy model (charm.fast).
    synthesis: tuple[int, ...] = ()

    @property
    def levels(self) -> int:
        return len(self.lambdas)


@dataclass
class CodecOut:
    x_hat: Tensor
    likelihoods: dict[str, Tensor]


@register_arch("msh", config=MshConfig, tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08]),
               summary="mean-scale hyperprior (Minnen 2018, no context) + gain units (Cui 2021)")
class MeanScaleHyperprior(nn.Module):
    """Variable-rate mean-scale hyperprior. ``level`` is a float in [0, levels-1] per image."""

    downsampling = 64  # input sides are padded to a multiple of this

    def __init__(self, cfg: MshConfig, inference: bool = False):
        super().__init__()
        self.cfg = cfg
        N, M = cfg.N, cfg.M
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M),
        )
        s1, s2, s3 = cfg.synthesis or (N, N, N)
        self.g_s = nn.Sequential(
            deconv(M, s1), GDN(s1, inverse=True), deconv(s1, s2), GDN(s2, inverse=True),
            deconv(s2, s3), GDN(s3, inverse=True), deconv(s3, 3),
        )
        # Quantization step ~ 1/sqrt(lambda) for MSE, so start each level's gain there.
        lam = torch.tensor(cfg.lambdas, dtype=torch.float32)
        init = 0.5 * torch.log(lam / lam[len(lam) // 2])
        self.latent = self._latent(cfg, init, inference)

    def _latent(self, cfg: MshConfig, init_log_gain: Tensor, inference: bool) -> GainedHyperprior:
        return GainedHyperprior(cfg.N, cfg.M, cfg.levels, init_log_gain, inference)

    def lambda_at(self, level: Tensor) -> Tensor:
        """Lambda for fractional levels: geometric interpolation between trained levels."""
        logl = torch.log(torch.tensor(self.cfg.lambdas, device=level.device))
        top = len(self.cfg.lambdas) - 1
        level = level.clamp(0, top)
        lo = level.floor().long().clamp(max=max(top - 1, 0))
        hi = (lo + 1).clamp(max=top)
        t = level - lo.to(level.dtype)
        return torch.exp(logl[lo] + t * (logl[hi] - logl[lo]))

    def forward(self, x: Tensor, level: Tensor) -> CodecOut:
        y = self.g_a(x)
        lat = self.latent(y, level)
        x_hat = self.g_s(lat.y_hat.to(y.dtype) if torch.is_autocast_enabled() else lat.y_hat)
        return CodecOut(x_hat, lat.likelihoods)

    # ---- real coding -------------------------------------------------------------------
    # Big images run every transform tile by tile (liccodec.tiling): the float transforms
    # then match whole-image processing up to rounding, the integer hyper-synthesis exactly,
    # so a file decodes to the same latents whether either side tiled or not.
    @torch.no_grad()
    def compress(self, x: Tensor, q_milli: int, precision: str = "fp32",
                 tiles: TilePolicy | None = None) -> dict[str, bytes]:
        """x: (1, 3, H, W) in [0, 1], H and W multiples of :attr:`downsampling`.

        ``precision`` ("fp32" or "bf16") applies to the float transforms only; what
        decides the coder's parameters is integer arithmetic either way. ``tiles`` says
        when to tile (default: :meth:`TilePolicy.from_env`). Equal to
        ``compress_latent(analysis(x))``, which lets one analysis serve several qualities.
        """
        return self.compress_latent(self.analysis(x, precision, tiles), q_milli, precision, tiles)

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
                        tiles: TilePolicy | None = None) -> dict[str, bytes]:
        """The quality-dependent half of :meth:`compress`: code y at ``q_milli``."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        hw = (y.shape[-2] * self.y_stride, y.shape[-1] * self.y_stride)
        tile = tiles.core(self.y_stride) if tiles.applies(*hw) else None
        with transform_precision(y.device, precision):
            return self.latent.compress(y, q_milli, tile)[0]

    @torch.no_grad()
    def decompress(self, streams: dict[str, bytes], hw: tuple[int, int], q_milli: int,
                   precision: str = "fp32", tiles: TilePolicy | None = None) -> Tensor:
        """Inverse of :meth:`compress` for a padded size ``hw``; returns x_hat in [0, 1]."""
        tiles = TilePolicy.from_env() if tiles is None else tiles
        z_hw = (hw[0] // self.downsampling, hw[1] // self.downsampling)
        if not tiles.applies(*hw):
            y_hat = self.latent.decompress(streams, z_hw, q_milli)
            with transform_precision(y_hat.device, precision):
                x_hat = self.g_s(y_hat.contiguous(memory_format=torch.channels_last))
            return x_hat.float().clamp_(0, 1)
        y_hat = self.latent.decompress(streams, z_hw, q_milli, tiles.core(self.y_stride))
        with transform_precision(y_hat.device, precision):
            return run_tiled(self._synthesis, y_hat, Geometry.of(self.g_s), tiles.core(self.y_stride))

    @property
    def y_stride(self) -> int:
        """Image pixels per latent position of y (g_a's total downsampling)."""
        return Geometry.of(self.g_a).down

    def _analysis(self, x: Tensor) -> Tensor:
        return self.g_a(x.contiguous(memory_format=torch.channels_last))

    def _synthesis(self, y_hat: Tensor) -> Tensor:
        return self.g_s(y_hat.contiguous(memory_format=torch.channels_last)).float().clamp_(0, 1)

    def inference_state(self) -> dict[str, Tensor]:
        """Float tensors needed to code (the exact parts are exported separately)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self._training_only())}

    def _training_only(self) -> tuple[str, ...]:
        return tuple(f"latent.{p}" for p in self.latent.training_only)

    def export_tensors(self) -> dict[str, Tensor]:
        """Shipped tensors: transform parameters in float16 (halves the file; the
        reconstruction changes by < 0.01 dB), buffers and gains in float32, and the exact
        integer parts. Loading upcasts to float32.

        The float parameters of the z prior ride along (about 20k numbers): coding never
        reads them (it uses the exported tables), but a warm start and the CompressAI
        reference comparison (``liccodec.eval.reference``) do."""
        from liccodec.latent.hyperprior import export_exact, prior_quantiles

        params = {n for n, _ in self.named_parameters()}
        half = ("g_a.", "g_s.", "latent.h_a.")
        state = {k: (v.half() if k in params and k.startswith(half) else v)
                 for k, v in self.inference_state().items()}
        eb = self.latent.entropy_bottleneck
        prior = {f"{REFERENCE_ONLY}{n}": p.detach().float() for n, p in eb.named_parameters()}
        prior[f"{REFERENCE_ONLY}quantiles"] = prior_quantiles(eb).float()
        return {**state, **prior, **export_exact(self.latent)}

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        float_part = {k: v for k, v in tensors.items() if not k.startswith(("exact.", REFERENCE_ONLY))}
        missing, unexpected = self.load_state_dict(float_part, strict=False)
        bad = [k for k in missing if not k.startswith(self._training_only())]
        if bad or unexpected:
            raise KeyError(f"weights do not fit the architecture: missing {bad[:5]}, unexpected {unexpected[:5]}")
        self.latent.load_exact(tensors)
