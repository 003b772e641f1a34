"""The GAN losses: WGAN-GP with the drift term (the paper's) and non-saturating with R1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.loops.gan_config import GANTrainConfig, Phase
from trainer.networks.stylegan import Discriminator


def _input_gradient_norm2(D: Discriminator, x: torch.Tensor, phase: Phase) -> torch.Tensor:
    """``||dD(x)/dx||^2`` per sample, ``[N]``, kept in the graph for the penalty."""
    x = x.detach().requires_grad_(True)
    out = D(x, resolution=phase.resolution, alpha=phase.alpha)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    return grad.float().square().flatten(1).sum(1)


def d_loss(
    cfg: GANTrainConfig,
    D: Discriminator,
    reals: torch.Tensor,
    fakes: torch.Tensor,
    eps: torch.Tensor,
    phase: Phase,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Discriminator loss of one batch; ``eps [N, 1, 1, 1]`` mixes reals and fakes for WGAN-GP."""
    d_real = D(reals, resolution=phase.resolution, alpha=phase.alpha).float()
    d_fake = D(fakes, resolution=phase.resolution, alpha=phase.alpha).float()
    if cfg.loss == "wgan-gp":
        mixed = torch.lerp(fakes.detach().to(reals.dtype), reals, eps.to(reals.dtype))
        gp = (_input_gradient_norm2(D, mixed, phase).sqrt() - 1.0).square().mean()
        drift = d_real.square().mean()
        loss = d_fake.mean() - d_real.mean() + cfg.gp_lambda * gp + cfg.drift * drift
        return loss, {"loss_D": loss, "gp": gp, "D_real": d_real.mean(), "D_fake": d_fake.mean()}
    r1 = _input_gradient_norm2(D, reals, phase).mean()
    loss = F.softplus(d_fake).mean() + F.softplus(-d_real).mean() + 0.5 * cfg.r1_gamma * r1
    return loss, {"loss_D": loss, "r1": r1, "D_real": d_real.mean(), "D_fake": d_fake.mean()}


def g_loss(cfg: GANTrainConfig, d_fake: torch.Tensor) -> torch.Tensor:
    d_fake = d_fake.float()
    return -d_fake.mean() if cfg.loss == "wgan-gp" else F.softplus(-d_fake).mean()
