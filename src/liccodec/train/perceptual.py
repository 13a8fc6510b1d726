"""Perceptual training terms: LPIPS and a relativistic PatchGAN (issue 24).

The generator's distortion becomes

    D(x, x_hat) = mse_weight * lambda(level) * 255^2 * MSE + lpips * LPIPS(x, x_hat)
                  + adversarial * L_G(x, x_hat)

following PO-DKIC (seed 004: PatchGAN with a relativistic loss, LPIPS and MSE) and HiFiC
(Mentzer et al. 2020) for the roles of the terms. The MSE weight keeps the model's per-level
lambda, so the balance shifts with the rate by itself: at low qualities (small lambda) LPIPS and
the discriminator dominate, at high qualities the squared error does. That is the effect of
PO-DKIC's rate-switched lambda (its eq. 2) without a second schedule.

The discriminator is a small PatchGAN (Isola et al. 2017): strided 4x4 convolutions with
spectral normalisation (Miyato et al. 2018), one logit per patch of about 46x46 pixels. Its
losses are the relativistic average ones (Jolicoeur-Martineau 2019), as PO-DKIC uses:
each side is judged by how much more real it looks than the other side's average.

``disc = "semantic"`` swaps in ICISP's semantic-informed discriminator (Wei et al. 2025,
arXiv 2502.13988, seed 000), with one substitution: ICISP conditions its PatchGAN on DINOv2
features of the original image; DINOv2 cannot be obtained here, so a frozen ImageNet VGG16
(the LPIPS-VGG backbone, ``lic perceptual fetch``) plays that role::

    x (original) --/2--> VGG16 relu4_3 (512 ch, 1/16) --conv--+
                                                              +-- select (softmax over the two
    y_hat (the decoded latent, 1/16) -----------------conv---+    sources, per channel) --> c
    image --conv s2--> SFT(c) --conv s2--> SFT(c) --conv s2--> SFT(c) --conv s2--> 1x1 --> logits

The condition c (12 channels at the latent's grid, as in ICISP and HiFiC) modulates half of
each stage's channels by a spatial scale and shift (SFT, Wang et al. 2018). Real and fake images
are judged under the same condition, the original's, so the discriminator can tell a
reconstruction whose content drifts from what the original depicts. The losses stay the
relativistic ones, so the two discriminators differ only in what they see.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """Patch logits of an image in [0, 1]: N x 3 x H x W -> N x 1 x H/8 x W/8 (roughly)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(c_in: int, c_out: int, k: int, s: int) -> list[nn.Module]:
            return [spectral_norm(nn.Conv2d(c_in, c_out, k, s, padding=(k - 1) // 2)),
                    nn.LeakyReLU(0.2, inplace=True)]

        self.net = nn.Sequential(
            *block(3, w, 4, 2), *block(w, 2 * w, 4, 2), *block(2 * w, 4 * w, 4, 2),
            *block(4 * w, 4 * w, 3, 1),
            spectral_norm(nn.Conv2d(4 * w, 1, 3, 1, padding=1)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2 - 1)


class _SFT(nn.Module):
    """Spatial feature transform: half of ``x``'s channels get ``(1 + scale) * x + shift``,
    both computed from the condition (nearest-upsampled to ``x``'s grid)."""

    def __init__(self, cond: int, channels: int):
        super().__init__()
        half = channels - channels // 2
        self.scale = nn.Sequential(nn.Conv2d(cond, half, 1), nn.LeakyReLU(0.1), nn.Conv2d(half, half, 1))
        self.shift = nn.Sequential(nn.Conv2d(cond, half, 1), nn.LeakyReLU(0.1), nn.Conv2d(half, half, 1))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        c = F.interpolate(cond, size=x.shape[-2:], mode="nearest")
        keep, mod = x[:, : x.shape[1] // 2], x[:, x.shape[1] // 2:]
        return torch.cat([keep, (1 + self.scale(c)) * mod + self.shift(c)], 1)


class VGGSemantics(nn.Module):
    """Frozen VGG16 up to relu4_3 on a half-size copy of the image: 512 channels at 1/16 of the
    image, the latent's grid (the stand-in for ICISP's DINOv2 patch features)."""

    RELU4_3 = 22

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from liccodec.perceptual import store
        from liccodec.perceptual.nets import LPIPS_SCALE, LPIPS_SHIFT, vgg16_features

        feats = vgg16_features()
        if pretrained:
            feats.load_state_dict(store.load("vgg16.safetensors"))
        self.features = feats[: self.RELU4_3 + 1]
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        return self.features((h * 2 - 1 - self.shift) / self.scale)


class SemanticDiscriminator(nn.Module):
    """ICISP-style conditional PatchGAN: image -> patch logits at 1/16, modulated by the fused
    semantic (VGG16 of the original) and latent (y_hat) condition; see the module docstring."""

    def __init__(self, width: int = 32, latent_channels: int = 192, cond: int = 12,
                 semantic_channels: int = 512):
        super().__init__()
        self.from_sem = nn.Conv2d(semantic_channels, cond, 3, padding=1)
        self.from_lat = nn.Conv2d(latent_channels, cond, 3, padding=1)
        hidden = max(cond // 2, 4)
        # selective fusion (SKNet-style): per-channel softmax weights over the two sources
        self.select = nn.Sequential(nn.Conv2d(cond, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 2 * cond, 1))
        widths = (width, 2 * width, 4 * width, 8 * width)
        c_in = 3
        self.convs = nn.ModuleList()
        for w in widths:
            self.convs.append(spectral_norm(nn.Conv2d(c_in, w, 4, 2, padding=1)))
            c_in = w
        self.sft = nn.ModuleList(_SFT(cond, w) for w in widths[:3])
        self.out = nn.Conv2d(widths[-1], 1, 1)

    def condition(self, semantics: Tensor, y_hat: Tensor) -> Tensor:
        a = F.leaky_relu(self.from_sem(semantics), 0.2)
        b = F.leaky_relu(self.from_lat(y_hat.to(a.dtype)), 0.2)
        if b.shape[-2:] != a.shape[-2:]:
            b = F.interpolate(b, size=a.shape[-2:], mode="nearest")
        n, c = a.shape[:2]
        w = self.select((a + b).mean((2, 3), keepdim=True)).view(n, 2, c, 1, 1).softmax(1)
        return w[:, 0] * a + w[:, 1] * b

    def forward(self, x: Tensor, context: tuple[Tensor, Tensor]) -> Tensor:
        c = self.condition(*context)
        h = x * 2 - 1
        for i, conv in enumerate(self.convs):
            h = F.leaky_relu(conv(h), 0.2)
            if i < len(self.sft):
                h = self.sft[i](h, c)
        return self.out(h)


def relativistic_losses(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """(discriminator loss, generator loss) of the relativistic average GAN on patch logits.

    ``real`` and ``fake`` are the discriminator's logits of the originals and of the
    reconstructions. Pass ``fake`` detached for the discriminator's loss; the generator's loss
    uses ``real`` detached (its gradient flows through ``fake`` only)."""
    real, fake = real.float(), fake.float()
    d_real = real - fake.mean()
    d_fake = fake - real.mean()
    bce = F.binary_cross_entropy_with_logits
    d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
    g_loss = bce(d_fake, torch.ones_like(d_fake)) + bce(d_real, torch.zeros_like(d_real))
    return d_loss, g_loss


class PerceptualTerms(nn.Module):
    """LPIPS and the adversarial game, as configured by a recipe's [train] table."""

    def __init__(self, lpips: float, lpips_net: str, adversarial: float, disc_width: int,
                 disc: str = "patch", latent_channels: int = 192, pretrained: bool = True):
        super().__init__()
        self.w_lpips, self.w_adv = lpips, adversarial
        self.lpips = None
        if lpips > 0:
            from liccodec.perceptual import LPIPS

            self.lpips = LPIPS(lpips_net, pretrained=pretrained)
        self.disc = self.semantics = None
        if adversarial > 0:
            if disc == "patch":
                self.disc = PatchDiscriminator(disc_width)
            elif disc == "semantic":
                self.disc = SemanticDiscriminator(disc_width, latent_channels)
                self.semantics = VGGSemantics(pretrained)
            else:
                raise ValueError(f"unknown discriminator {disc!r}; choose 'patch' or 'semantic'")

    def _judge(self, x: Tensor, context) -> Tensor:
        return self.disc(x) if self.semantics is None else self.disc(x, context)

    def context(self, x: Tensor, y_hat: Tensor | None):
        """What the discriminator is conditioned on for this batch (None for the plain one):
        the original's VGG16 features and the decoded latent, both without gradients."""
        if self.semantics is None:
            return None
        return self.semantics(x.float()), y_hat.detach()

    def generator(self, x: Tensor, x_hat: Tensor, adversarial: bool,
                  context=None) -> tuple[Tensor, dict[str, float]]:
        """Per-image perceptual loss of the reconstructions (added to the weighted MSE)."""
        loss = torch.zeros(x.shape[0], device=x.device)
        log: dict[str, float] = {}
        if self.lpips is not None:
            lp = self.lpips(x_hat.float(), x.float())
            loss = loss + self.w_lpips * lp
            log["lpips"] = lp.mean().item()
        if self.disc is not None and adversarial:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            _, g_loss = relativistic_losses(self._judge(x, context).detach(), self._judge(x_hat, context))
            for p in self.disc.parameters():
                p.requires_grad_(True)
            loss = loss + self.w_adv * g_loss
            log["g_adv"] = g_loss.item()
        return loss, log

    def discriminator_loss(self, x: Tensor, x_hat: Tensor, context=None) -> Tensor:
        d_loss, _ = relativistic_losses(self._judge(x, context), self._judge(x_hat.detach(), context))
        return d_loss
