"""LPIPS and DISTS as differentiable torch modules (frozen, always in eval mode).

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018), version 0.1::

    x in [0, 1] -> 2x - 1 -> (. - shift) / scale -> backbone -> ReLU taps f_l (l = 1..5)
    d(x, y) = sum_l mean_hw( w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 )

with |.| the L2 norm over channels at each pixel and w_l >= 0 the learned linear layers.
Backbones: AlexNet (taps after its 5 convolutions) or VGG16 (relu1_2 ... relu5_3).

DISTS (Ding et al., "Image Quality Assessment: Unifying Structure and Texture Similarity",
TPAMI 2020)::

    x in [0, 1] -> ImageNet mean/std -> VGG16 with its max-pools replaced by L2 pooling
    stages s = 0..5: the image itself, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    per channel: l = (2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c)     (texture: means)
                 s = (2 cov_xy + c) / (var_x + var_y + c)            (structure: correlation)
    D(x, y) = 1 - sum_channels (alpha l + beta s) / (sum alpha + sum beta),  c = 1e-6

Both take N x 3 x H x W tensors in [0, 1] (any float dtype; they compute in float32 with
autocast off, so a bf16 training step can use them as a loss) and return one distance per image
(shape N), differentiable with respect to both inputs. Weights come from
:mod:`liccodec.perceptual.store` (``pretrained=False`` gives random ones, for tests); the
parameters never require gradients.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liccodec.perceptual import store

#: LPIPS's input scaling layer (applied after mapping [0, 1] to [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` without its last max-pool (indices 0..11)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )


def vgg16_features(pool=lambda channels: nn.MaxPool2d(2, 2)) -> nn.Sequential:
    """torchvision's ``vgg16().features`` without its last max-pool (indices 0..29);
    ``pool(channels)`` builds each of the four inner pooling layers."""
    layers: list[nn.Module] = []
    c_in = 3
    for block, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if block:
            layers.append(pool(c_in))
        for _ in range(convs):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()]
            c_in = width
    return nn.Sequential(*layers)


class L2Pool(nn.Module):
    """DISTS's anti-aliased pooling: sqrt of a 3x3 Hann-weighted mean of squares, stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.from_numpy(np.outer(a, a) / np.outer(a, a).sum()).float()
        self.register_buffer("filter", g.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x.square(), self.filter, stride=2, padding=1, groups=x.shape[1])
        return (y + 1e-12).sqrt()


def _taps(features: nn.Sequential, x: Tensor, taps: tuple[int, ...]) -> list[Tensor]:
    out = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            out.append(x)
            if len(out) == len(taps):
                break
    return out


def _as_float_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected two N x 3 x H x W tensors of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    return x.float(), y.float()


class _Frozen(nn.Module):
    def _freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        # No dropout or batch norm is meant to run here: stay in eval mode even when a
        # training loop calls .train() on a parent module.
        return super().train(False)


_LPIPS_NETS = {
    # net: (features builder, tap indices, channels, backbone file, linear-layers file)
    "alex": (alexnet_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256),
             "alexnet.safetensors", "lpips_alex_lin.safetensors"),
    "vgg": (vgg16_features, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512),
            "vgg16.safetensors", "lpips_vgg_lin.safetensors"),
}


class LPIPS(_Frozen):
    """LPIPS v0.1 distance, ``net`` = ``"alex"`` (the usual choice for evaluation) or ``"vgg"``
    (closer to human judgements as a training loss per the LPIPS authors)."""

    def __init__(self, net: str = "alex", pretrained: bool = True):
        super().__init__()
        if net not in _LPIPS_NETS:
            raise ValueError(f"unknown LPIPS net {net!r}; choose one of {sorted(_LPIPS_NETS)}")
        build, self.taps, channels, feat_file, lin_file = _LPIPS_NETS[net]
        self.net = net
        self.features = build()
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        if pretrained:
            self.features.load_state_dict(store.load(feat_file))
            self.lin.load_state_dict(store.load(lin_file))
        else:  # random backbone for tests; the real linear layers are non-negative too
            with torch.no_grad():
                for lin in self.lin:
                    lin.weight.abs_()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self._freeze()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x, y = _as_float_pair(x, y)
            n = x.shape[0]
            both = (torch.cat([x, y]) * 2 - 1 - self.shift) / self.scale
            d = x.new_zeros(n)
            for f, lin in zip(_taps(self.features, both, self.taps), self.lin):
                # sqrt(sum + 1e-20) rather than sqrt(sum) + 1e-10: the same value wherever it
                # matters, but a finite gradient at all-zero ReLU vectors (sqrt'(0) is inf).
                f = f * torch.rsqrt(f.square().sum(1, keepdim=True) + 1e-20)
                d = d + lin((f[:n] - f[n:]).square()).mean((1, 2, 3))
            return d


class DISTS(_Frozen):
    """DISTS distance (0 for identical images, larger is worse)."""

    CHANNELS = (3, 64, 128, 256, 512, 512)
    TAPS = (3, 8, 15, 22, 29)

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.features = vgg16_features(pool=L2Pool)
        if pretrained:
            self.features.load_state_dict(store.load("vgg16.safetensors"))
            ab = store.load("dists_alpha_beta.safetensors")
        else:  # random backbone for tests; DISTS's own initialisation of alpha and beta
            ab = {k: torch.randn(sum(self.CHANNELS)) * 0.01 + 0.1 for k in ("alpha", "beta")}
        self.alpha = nn.Parameter(ab["alpha"].reshape(-1))
        self.beta = nn.Parameter(ab["beta"].reshape(-1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._freeze()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x, y = _as_float_pair(x, y)
            n, c = x.shape[0], 1e-6
            both = torch.cat([x, y])
            stages = [both] + _taps(self.features, (both - self.mean) / self.std, self.TAPS)
            w_sum = self.alpha.sum() + self.beta.sum()
            alphas = torch.split(self.alpha / w_sum, self.CHANNELS)
            betas = torch.split(self.beta / w_sum, self.CHANNELS)
            sim = x.new_zeros(n)
            for f, a, b in zip(stages, alphas, betas):
                fx, fy = f[:n], f[n:]
                mx, my = fx.mean((2, 3)), fy.mean((2, 3))
                vx = (fx - mx[..., None, None]).square().mean((2, 3))
                vy = (fy - my[..., None, None]).square().mean((2, 3))
                cov = (fx * fy).mean((2, 3)) - mx * my
                texture = (2 * mx * my + c) / (mx.square() + my.square() + c)
                structure = (2 * cov + c) / (vx + vy + c)
                sim = sim + (texture * a).sum(1) + (structure * b).sum(1)
            return 1 - sim
