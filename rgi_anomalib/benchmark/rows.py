"""The harness's unit of result: one method on one category of one dataset for one seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ResultRow:
    """What every table, file (results.csv / .json) and CI guard is made of.

    ``metrics`` holds ``metrics.category_metrics`` (Dice definitions, AUROC, AUPRO, thresholds),
    ``gap`` ``predict.gap_columns`` and ``restoration`` ``predict.restoration_columns`` (the
    restoration under the defect, ``metrics.RESTORATION_KEYS``); ``as_dict`` flattens them
    between the identity and the cost columns, the column order of results.csv. Rows written
    before a column existed lack it: readers take a missing key as not measured.
    """

    model: str
    model_class: str
    form: str
    dataset: str
    category: str
    seed: int
    image_size: int
    n_defect: int
    n_normal: int
    n_calibration: int
    pixel_metrics: bool
    metrics: dict[str, float] = field(default_factory=dict)
    gap: dict[str, float] = field(default_factory=dict)
    restoration: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    fit_from: str = ""
    test_seconds_per_image: float = 0.0
    init_args: str = "{}"  # JSON of the init_args used, per-category settings included

    def as_dict(self) -> dict[str, Any]:
        grouped = (*_TAIL, "metrics", "gap", "restoration")
        identity = {k: v for k, v in vars(self).items() if k not in grouped}
        tail = {k: getattr(self, k) for k in _TAIL}
        return {**identity, **self.metrics, **self.gap, **self.restoration, **tail}


_TAIL = ("fit_seconds", "fit_from", "test_seconds_per_image", "init_args")
