"""The reconstruction gap: how far the restoration G(ẑ) is from an image, in [0, 1] pixel units.

On a defect-free image the gap is the generator's approximation error. A defect can only stand
out in the mask or residual where its contrast against the clean surface exceeds this error, so
the gap is read against a dataset's defect contrast (synthetic_btad reports it): gap / contrast
below 1 leaves the defect visible, above 1 hides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GAP_PERCENTILE = 99.0


@dataclass(frozen=True)
class ReconstructionGap:
    """Per-image gap of a batch (tensors of shape B)."""

    rmse: torch.Tensor  # root mean square of x − G(ẑ) over pixels and channels
    p99: torch.Tensor  # 99th percentile of the per-pixel residual |x − G(ẑ)| (channel RMS)


def reconstruction_gap(
    images: torch.Tensor, restored: torch.Tensor, value_range: float = 2.0
) -> ReconstructionGap:
    """Gap between ``images`` and ``restored`` (both B×C×H×W in the same range, of width
    ``value_range``: 2 for the generator's [-1, 1], 1 for [0, 1]); returned in [0, 1] units."""
    if images.shape != restored.shape:
        msg = f"images {tuple(images.shape)} and restored {tuple(restored.shape)} differ in shape"
        raise ValueError(msg)
    residual = (images.detach().float() - restored.detach().float()) / value_range
    per_pixel = residual.pow(2).mean(dim=1).flatten(start_dim=1)  # B×(H·W), channel mean
    rmse = per_pixel.mean(dim=1).sqrt()
    p99 = torch.quantile(per_pixel.sqrt(), GAP_PERCENTILE / 100.0, dim=1)
    return ReconstructionGap(rmse=rmse, p99=p99)
