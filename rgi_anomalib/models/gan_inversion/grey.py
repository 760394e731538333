"""Maps and images to one grey channel, as the authors did before scoring."""

from __future__ import annotations

import torch

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
