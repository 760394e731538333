"""Differentiable augmentation for GAN training (DiffAugment, Zhao et al., NeurIPS 2020).

The discriminator sees every real and every generated image through the same random, differentiable
transformations, in its own step and in the generator's step, so it cannot memorise a small
training set while the generator still receives gradients through the augmentation. The images
the generator must produce are not augmented. Written here rather than imported: the reference
code is not a package on PyPI, and the three operations are a few tensor lines each.

Policies (comma-separated): ``color`` (brightness, saturation, contrast), ``translation`` (shift by
up to 1/8 of the side, zero padding), ``cutout`` (one zeroed square of half the side).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """The policy's operations, or one clear error naming the unknown ones."""
    ops = tuple(op.strip() for op in policy.split(",") if op.strip())
    unknown = [op for op in ops if op not in POLICIES]
    if unknown:
        msg = f"diff_augment={policy!r}: unknown operation(s) {unknown}; use {', '.join(POLICIES)}"
        raise ValueError(msg)
    return ops


def _color(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, generator=gen).to(x) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, generator=gen).to(x) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, generator=gen).to(x) + 0.5) + mean  # contrast


def _translation(
    x: torch.Tensor, gen: torch.Generator | None, ratio: float = 0.125
) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :, None] + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))  # out-of-image pixels read the zero border
    index = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows, cols].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, gen: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=gen).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=gen).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    top, left = cy - ch // 2, cx - cw // 2  # a ch×cw square centred at (cy, cx), clipped
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(
    images: torch.Tensor, ops: tuple[str, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply ``ops`` (from ``parse_policy``) to a B×C×H×W batch; differentiable in ``images``."""
    for op in ops:
        images = _OPS[op](images, generator)
    return images
