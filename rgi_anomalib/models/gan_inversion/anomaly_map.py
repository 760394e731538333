"""Post-processing of an inversion: anomaly maps and image scores."""

from __future__ import annotations

import torch

from .grey import GREY_WEIGHTS, to_grey  # noqa: F401 - re-exported
from .solver import InversionResult


def anomaly_map(images: torch.Tensor, result: InversionResult) -> torch.Tensor:
    """B×1×H×W map: |M̂| for RGI / R-RGI, the residual |x − G(ẑ)| for AnoGAN."""
    if result.mask is not None:
        return to_grey(result.mask.abs())
    return to_grey((images - result.restored).abs())


def image_score(maps: torch.Tensor) -> torch.Tensor:
    """Image-level anomaly score: the map's maximum (as most anomalib pixel models do)."""
    return maps.flatten(start_dim=1).amax(dim=1)
