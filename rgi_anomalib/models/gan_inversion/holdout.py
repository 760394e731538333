"""Hold-out inversion: every pixel is restored by a solve that did not see it.

A latent fitted to the whole image can draw part of the defect (the defect is "absorbed", and
the residual under it shrinks). Here the image is split into ``phases`` interleaved sets of
square cells (2: a checkerboard; 4: the four cells of each 2×2 block); each set is hidden in
turn through the solver's ``missing`` path, and G(ẑ) of that solve fills it. The restoration
of a pixel then comes from the surface around it only, which is the idea of inpainting-based
detection (Zavrtanik et al., RIAD 2021) applied to GAN inversion. It costs ``phases`` solves.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .solver import InversionResult, Progress

HOLDOUT_PHASES = (0, 2, 4)  # 0: off


def holdout_masks(height: int, width: int, phases: int, cell: int) -> torch.Tensor:
    """``phases``×1×H×W binary masks of square ``cell``-pixel cells; they partition the image."""
    if phases not in HOLDOUT_PHASES[1:]:
        raise ValueError(f"holdout_phases must be one of {HOLDOUT_PHASES}, got {phases!r}")
    if not (isinstance(cell, int) and cell >= 1):
        raise ValueError(f"holdout_cell must be a positive integer, got {cell!r}")
    rows = (torch.arange(height) // cell) % 2
    cols = (torch.arange(width) // cell) % 2
    if phases == 2:
        phase = (rows[:, None] + cols[None, :]) % 2
    else:
        phase = rows[:, None] * 2 + cols[None, :]
    return torch.stack([(phase == p).float() for p in range(phases)])[:, None]


def invert_held_out(
    invert: Callable[..., InversionResult],
    images: torch.Tensor,
    phases: int,
    cell: int,
    progress: Progress | None = None,
) -> torch.Tensor:
    """G(ẑ) composed from ``phases`` solves, each pixel from the solve that hid it.

    ``invert(images, missing=..., progress=...)`` runs one solve (the model's, with its own
    objective); ``progress`` counts over all the solves."""
    batch, _, height, width = images.shape
    masks = holdout_masks(height, width, phases, cell).to(images)
    restored = torch.zeros_like(images)
    for k, hidden in enumerate(masks):
        missing = hidden.expand(batch, 1, height, width).contiguous()
        result = invert(images, missing=missing, progress=_offset(progress, k, phases))
        restored += result.restored * hidden
    return restored


def _offset(progress: Progress | None, k: int, phases: int) -> Progress | None:
    """Solve ``k`` of ``phases`` reported as one stretch of a single count."""
    if progress is None:
        return None
    return lambda done, total: progress(k * total + done, phases * total)
