"""Defect contrast: how far each defect image is from its clean twin inside the mask.

The paper's mean-colour fill hides a defect as well as a flat patch can: what is left to detect is
the texture the fill removed. The in-mask RMS difference between the defect image and its clean
twin (the base before the defect was pasted) measures that, in [0, 1] pixel units:

    contrast = sqrt( mean over mask pixels p and channels k of ((x_sys[p, k] - x[p, k]) / 255)² )

It is 0 when the masked region is one flat colour (the fill changes nothing) and grows with the
texture under the mask. ``build_dataset`` computes it for every defect image while building and
stores it in ``manifest.csv`` (column ``contrast``) and, summarised, in ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthetic_btad.errors import MaskError
from synthetic_btad.masks import CATEGORIES

CONTRAST_DEFINITION = (
    "in-mask RMS difference between the defect image and its clean twin (the base before the "
    "defect was pasted), over all mask pixels and RGB channels, in [0, 1] pixel units"
)
_DECIMALS = 6


def rms_contrast(defect: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """In-mask RMS difference of two uint8 HxWxC images in [0, 1] units (see the module doc)."""
    if defect.shape != clean.shape or defect.ndim != 3:
        raise MaskError(
            f"defect and clean images must have the same HxWxC shape, got {defect.shape} "
            f"and {clean.shape}"
        )
    if mask.dtype != np.bool_ or mask.shape != defect.shape[:2]:
        raise MaskError(
            f"mask must be a boolean {defect.shape[:2]} array, got {mask.dtype} {mask.shape}"
        )
    if not mask.any():
        raise MaskError("mask is empty: the in-mask contrast is undefined")
    diff = (defect[mask].astype(np.float64) - clean[mask].astype(np.float64)) / 255.0
    return float(np.sqrt(np.mean(diff * diff)))


def stored_value(value: float) -> float:
    """The value as written to ``manifest.csv`` (6 decimals), so read-back equals the summary."""
    return float(f"{value:.{_DECIMALS}f}")


def contrast_stats(values: Sequence[float]) -> dict[str, float | int]:
    """Count, min, quartiles (linear interpolation) and max of contrast values."""
    if not values:
        return {"n": 0}
    q1, median, q3 = np.quantile(np.asarray(values, np.float64), [0.25, 0.5, 0.75])
    return {
        "n": len(values),
        "min": round(float(min(values)), _DECIMALS),
        "q1": round(float(q1), _DECIMALS),
        "median": round(float(median), _DECIMALS),
        "q3": round(float(q3), _DECIMALS),
        "max": round(float(max(values)), _DECIMALS),
    }


@dataclass(frozen=True)
class DefectContrast:
    """Per-image defect contrast of a dataset: ``per_image[category][file] = contrast``."""

    per_image: Mapping[str, Mapping[str, float]]

    @property
    def per_category(self) -> dict[str, dict[str, float | int]]:
        """Count, min, quartiles and max per category."""
        return {cat: contrast_stats(list(v.values())) for cat, v in self.per_image.items()}

    @property
    def overall(self) -> dict[str, float | int]:
        """The same statistics over every defect image of every category."""
        return contrast_stats([c for v in self.per_image.values() for c in v.values()])

    def to_dict(self) -> dict[str, Any]:
        """The ``contrast`` block of ``summary.json`` (statistics only, no per-image values)."""
        return {
            "definition": CONTRAST_DEFINITION,
            "per_category": self.per_category,
            "overall": self.overall,
        }


def format_contrast(block: Mapping[str, Any]) -> str:
    """One line per category, e.g. ``crack  median 0.0512 [q1 0.0401, q3 0.0620] (n 100)``."""

    def line(name: str, s: Mapping[str, Any]) -> str:
        if not s.get("n"):
            return f"  {name:<11} no defect images"
        return (
            f"  {name:<11} median {s['median']:.4f} [q1 {s['q1']:.4f}, q3 {s['q3']:.4f}] "
            f"(n {s['n']})"
        )

    per_cat = block["per_category"]  # summary.json sorts keys: print in category order
    order = [c for c in CATEGORIES if c in per_cat] + [c for c in per_cat if c not in CATEGORIES]
    rows = [line(cat, per_cat[cat]) for cat in order]
    rows.append(line("overall", block["overall"]))
    return "\n".join(rows)
