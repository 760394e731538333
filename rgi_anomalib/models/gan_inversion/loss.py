"""GAN training losses (non-saturating or hinge) and the R1 gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean discriminator loss on real and generated logits."""
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def generator_loss(d_generated: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean generator loss on the discriminator's logits of generated images."""
    return -d_generated.mean() if kind == "hinge" else F.softplus(-d_generated).mean()


def r1_penalty(d_real: torch.Tensor, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """γ/2 · E‖∇ₓD(x)‖² on real images (``real`` must require grad)."""
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return 0.5 * gamma * grad.pow(2).sum(dim=(1, 2, 3)).mean()
