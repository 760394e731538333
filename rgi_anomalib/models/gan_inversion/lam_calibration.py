"""λ without labels (``lam="auto"``): set from defect-free images so that the deployable rule
M̂ > 0 flags a chosen fraction of normal pixels.

For a fixed residual r the optimal mask is M = clip(1 − λ/(2r²), 0, 1) (solver.py), so M > 0
exactly where 2r² > λ. With r² the per-pixel squared residual (channel mean, the solver's [-1, 1]
units) of normal images after the solve, λ = 2 · quantile(r², 1 − rate) makes the rule flag a
fraction ``rate`` of their pixels. Nothing about defects is used: a factory can deploy it.

One pass: the residuals come from the solve with the preset λ, and the solve with the chosen λ
moves ẑ a little, so the realised rate on new normal images is measured, not assumed (the
benchmark reports the M̂ > 0 rule's Dice; docs/benchmark.md).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import torch

from .objective import squared_residual

logger = logging.getLogger(__name__)

AUTO = "auto"
# Checkpoint entry holding the calibrated λ (the hyper-parameter itself stays "auto").
CHECKPOINT_LAM_KEY = "rgi_anomalib_lam_auto"
# Pixels kept per image for the quantile (a seeded subset beyond this): bounded memory.
MAX_PIXELS_PER_IMAGE = 65536


def lam_for_normal_rate(residual_sq: torch.Tensor, rate: float) -> float:
    """λ such that ``2 r² > λ`` holds for a fraction ``rate`` of the values in ``residual_sq``."""
    if not 0 < rate < 1:
        msg = f"lam_normal_rate must be in (0, 1), got {rate!r}"
        raise ValueError(msg)
    values = residual_sq.detach().float().flatten()
    if values.numel() == 0:
        msg = "no normal pixels to calibrate lam on"
        raise ValueError(msg)
    return float(2.0 * torch.quantile(values, 1.0 - rate))


def check_lam(lam: float | str | None, objective: str) -> None:
    if isinstance(lam, str) and lam != AUTO:
        msg = f"lam must be a positive number, None or 'auto', got {lam!r}"
        raise ValueError(msg)
    if lam == AUTO and objective != "rgi":
        msg = "lam='auto' sets the mask's λ; this model has no mask (use Rgi or RRgi)"
        raise ValueError(msg)


class LamCalibrationMixin:
    """Validation hooks of ``GanInversionModule`` for ``lam="auto"``: collect the normal images'
    squared residuals, then set the solver's λ for ``inversion_settings.lam_normal_rate``.

    Needs on its host (a LightningModule): ``model`` (``GanInversionModel``, whose
    ``inversion`` it replaces) and ``inversion_settings`` (``InversionSettings``: ``lam`` and
    ``lam_normal_rate``).
    """

    inversion_settings: Any
    model: Any

    @property
    def calibrates_on_normal_images(self) -> bool:
        """True with ``lam="auto"``: a validation pass over defect-free images sets λ
        (the benchmark harness runs one on its calibration images)."""
        return self.inversion_settings.lam == AUTO

    def fitted_settings(self) -> dict[str, float]:
        """Settings chosen after fit (the benchmark records them in each row)."""
        return {"lam": self.model.inversion.lam} if self.calibrates_on_normal_images else {}

    def _reset_lam_residuals(self) -> None:
        self._lam_residuals: list[torch.Tensor] = []

    def _collect_lam_residuals(self, batch: Any) -> None:
        if not self.calibrates_on_normal_images or batch.gt_label is None:
            return
        restored = batch.restored_image * 2.0 - 1.0  # back to the solver's [-1, 1]
        # the residual the mask weighs (pixel or structural), B×H×W
        kind = self.model.inversion.robust_residual
        residual_sq = squared_residual(batch.image.detach(), restored, False, kind)[:, 0]
        generator = torch.Generator().manual_seed(len(self._lam_residuals))
        for i in torch.nonzero(batch.gt_label.reshape(-1) == 0).flatten().tolist():
            values = residual_sq[i].flatten().cpu()
            if values.numel() > MAX_PIXELS_PER_IMAGE:
                keep = torch.randperm(values.numel(), generator=generator)[:MAX_PIXELS_PER_IMAGE]
                values = values[keep]
            self._lam_residuals.append(values)

    def _calibrate_lam(self) -> None:
        if not self.calibrates_on_normal_images:
            return
        name = self.__class__.__name__
        lam = math.nan
        if self._lam_residuals:
            rate = self.inversion_settings.lam_normal_rate
            lam = lam_for_normal_rate(torch.cat(self._lam_residuals), rate)
        # Every rank uses rank 0's value (its own normal images) under DDP.
        lam = float(self.trainer.strategy.broadcast(lam, src=0))  # type: ignore[attr-defined]
        if math.isnan(lam):
            logger.warning("%s: lam='auto' saw no normal validation images; λ stays %s",
                           name, self.model.inversion.lam)  # fmt: skip
            return
        self.set_lam(lam)
        rate, images = self.inversion_settings.lam_normal_rate, len(self._lam_residuals)
        logger.info("%s: lam='auto' set λ = %.5g (target normal-pixel rate %g, %d images)",
                    name, lam, rate, images)  # fmt: skip

    def set_lam(self, lam: float) -> None:
        """Use ``lam`` from now on (also after saving and loading a checkpoint)."""
        self.model.inversion = dataclasses.replace(self.model.inversion, lam=lam)
        self._lam_auto_value = lam

    def _save_lam(self, checkpoint: dict[str, Any]) -> None:
        value = getattr(self, "_lam_auto_value", None)
        if value is not None:
            checkpoint[CHECKPOINT_LAM_KEY] = value

    def _load_lam(self, checkpoint: dict[str, Any]) -> None:
        if CHECKPOINT_LAM_KEY in checkpoint:
            self.set_lam(float(checkpoint[CHECKPOINT_LAM_KEY]))
