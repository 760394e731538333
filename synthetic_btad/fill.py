"""The paper's defect synthesis (Appendix F): fill the mask with the region's own mean colour."""

from __future__ import annotations

import numpy as np

from synthetic_btad.errors import MaskError


def region_mean_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel mean of ``image`` over the pixels where ``mask`` is true (float64, (C,))."""
    _check(image, mask)
    return image[mask].astype(np.float64).mean(axis=0)


def fill_defect(
    image: np.ndarray, mask: np.ndarray, colour: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x_sys, C)`` with ``x_sys = (1 - M) * x + M * C``.

    ``C`` is, per colour channel, the mean of ``x`` over the masked pixels, so the defect has the
    average colour of what it covers and is hard to see (the paper's choice, to avoid trivial
    detection). ``image`` is uint8 HxWx3, ``mask`` is a boolean HxW array. ``C`` is rounded to
    the nearest integer (ties to even) because the result is stored as 8-bit; the unrounded mean is
    available from :func:`region_mean_colour`. A given uint8 ``colour`` (3,) is used instead of
    the mean (``fill="random"`` in ``build_dataset``: loud defects).
    """
    if colour is None:
        mean = region_mean_colour(image, mask)
        colour = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    else:
        _check(image, mask)
        colour = np.asarray(colour, np.uint8)
    out = image.copy()
    out[mask] = colour
    return out, colour


def _check(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 3 or image.dtype != np.uint8:
        raise MaskError(f"image must be uint8 HxWxC, got {image.dtype} shape {image.shape}")
    if mask.ndim != 2:
        raise MaskError(f"mask must be single-channel HxW, got shape {mask.shape}")
    if mask.shape != image.shape[:2]:
        raise MaskError(f"mask size {mask.shape} differs from image size {image.shape[:2]}")
    if mask.dtype != np.bool_:
        raise MaskError(f"mask must be boolean, got {mask.dtype}")
    if not mask.any():
        raise MaskError("mask is empty: the fill colour (mean over the masked pixels) is undefined")
