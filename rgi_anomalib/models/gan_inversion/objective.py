"""The data terms of the solve: the per-image objective and the closed-form mask."""

from __future__ import annotations

import torch

from .inversion_config import InversionConfig
from .residual import structural_residual


def closed_form_mask(residual_sq: torch.Tensor, lam: float) -> torch.Tensor:
    """Optimal mask for a fixed residual: argmin_M (1−M)²r² + λ|M| = clip(1 − λ/(2r²), 0, 1)."""
    return (1.0 - lam / (2.0 * residual_sq.clamp_min(1e-12))).clamp_min(0.0)


def squared_residual(
    images: torch.Tensor, generated: torch.Tensor, per_channel: bool, kind: str = "pixel"
) -> torch.Tensor:
    """Squared residual, averaged over channels when the mask is shared by all channels.

    ``kind`` other than ``"pixel"``: the square of a structural residual (residual.py) of the
    two, one map shared by the channels, so the mask pays for structure G cannot draw rather
    than for grain. Leading dimensions broadcast, as for the pixel residual."""
    if kind == "pixel":
        sq = (images - generated).pow(2)
        return sq if per_channel else sq.mean(dim=-3, keepdim=True)
    images, generated = torch.broadcast_tensors(images, generated)
    lead, (channels, height, width) = images.shape[:-3], images.shape[-3:]
    flat = [(t.reshape(-1, channels, height, width) + 1.0) / 2.0 for t in (images, generated)]
    return structural_residual(*flat, kind).pow(2).reshape(*lead, 1, height, width)


def data_term(
    images: torch.Tensor,
    generated: torch.Tensor,
    config: InversionConfig,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image objective without the discriminator term (shape: leading batch dims).

    A shared mask (B×1×H×W) weighs the channel-mean squared residual by C, and its λ‖M‖₁ by C,
    so λ means the same per colour value whether the mask is shared or per channel.
    """
    dims = (-3, -2, -1)
    if config.objective == "l2":
        return (images - generated).pow(2).sum(dim=dims)
    if config.objective == "l1":
        return (images - generated).abs().sum(dim=dims)
    channels = images.shape[-3]
    weight = 1.0 if config.mask_per_channel else float(channels)
    residual_sq = squared_residual(
        images, generated, config.mask_per_channel, config.robust_residual
    )
    if mask is None:
        mask = closed_form_mask(residual_sq.detach(), config.lam)
    fit = ((1.0 - mask).pow(2) * residual_sq).sum(dim=dims)
    return weight * (fit + config.lam * mask.abs().sum(dim=dims))


def hide_missing(
    generated: torch.Tensor, images: torch.Tensor, missing: torch.Tensor | None
) -> torch.Tensor:
    """G(z) where pixels are known, the input where they are missing: a zero residual there, so
    no data term sees the missing pixels (gradients flow through the known ones only)."""
    if missing is None:
        return generated
    return generated * (1.0 - missing) + images * missing
