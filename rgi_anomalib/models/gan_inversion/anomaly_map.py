"""Post-processing of an inversion: anomaly maps and image scores."""

from __future__ import annotations

import torch

from .solver import InversionResult

# ITU-R 601 luma weights; the authors converted |M| (and residuals) to grey with them.
GREY_WEIGHTS = (0.2989, 0.587, 0.114)


def to_grey(maps: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×1×H×W: luma for RGB, identity for one channel, channel mean otherwise."""
    if maps.shape[1] == 1:
        return maps
    if maps.shape[1] == 3:
        weights = maps.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)
        return (maps * weights).sum(dim=1, keepdim=True)
    return maps.mean(dim=1, keepdim=True)


def anomaly_map(images: torch.Tensor, result: InversionResult) -> torch.Tensor:
    """B×1×H×W map: |M̂| for RGI / R-RGI, the residual |x − G(ẑ)| for AnoGAN."""
    if result.mask is not None:
        return to_grey(result.mask.abs())
    return to_grey((images - result.restored).abs())


def image_score(maps: torch.Tensor) -> torch.Tensor:
    """Image-level anomaly score: the map's maximum (as most anomalib pixel models do)."""
    return maps.flatten(start_dim=1).amax(dim=1)
