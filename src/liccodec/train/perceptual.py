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

    def __init__(self, lpips: float, lpips_net: str, adversarial: float, disc_width: int):
        super().__init__()
        self.w_lpips, self.w_adv = lpips, adversarial
        self.lpips = None
        if lpips > 0:
            from liccodec.perceptual import LPIPS

            self.lpips = LPIPS(lpips_net)
        self.disc = PatchDiscriminator(disc_width) if adversarial > 0 else None

    def generator(self, x: Tensor, x_hat: Tensor, adversarial: bool) -> tuple[Tensor, dict[str, float]]:
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
            _, g_loss = relativistic_losses(self.disc(x).detach(), self.disc(x_hat))
            for p in self.disc.parameters():
                p.requires_grad_(True)
            loss = loss + self.w_adv * g_loss
            log["g_adv"] = g_loss.item()
        return loss, log

    def discriminator_loss(self, x: Tensor, x_hat: Tensor) -> Tensor:
        d_loss, _ = relativistic_losses(self.disc(x), self.disc(x_hat.detach()))
        return d_loss
