"""Predict image lists with a fitted model and keep what the metrics need, per image."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .images import AS_IS, Geometry, crop_to_box, image_loader


@dataclass
class Predictions:
    paths: list[str] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)
    gts: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    restored: list[np.ndarray | None] = field(default_factory=list)
    # Per-image reconstruction gap ([0, 1] units); NaN where the model reports none.
    gap_rmse: list[float] = field(default_factory=list)
    gap_p99: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.maps)

    def part(self, start: int, stop: int, keep_restored: int, seconds: float) -> Predictions:
        """Images ``start:stop`` with their share of the time; restorations of the first
        ``keep_restored`` only."""
        restored = self.restored[start:stop]
        return Predictions(
            paths=self.paths[start:stop],
            maps=self.maps[start:stop],
            gts=self.gts[start:stop],
            scores=self.scores[start:stop],
            restored=[r if k < keep_restored else None for k, r in enumerate(restored)],
            gap_rmse=self.gap_rmse[start:stop],
            gap_p99=self.gap_p99[start:stop],
            seconds=seconds,
        )


# One group of images predicted together: paths, their masks (None: no pixel labels), label.
ImageGroup = tuple[list[Path], list[Path | None] | None, int]


def _per_image(values: Any, count: int) -> list[float]:
    """A batch attribute of shape B as floats; NaN for a model that does not set it."""
    if values is None:
        return [math.nan] * count
    return [float(v) for v in values.detach().float().cpu().reshape(-1)]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def gap_columns(normal: Predictions, defect: Predictions) -> dict[str, float]:
    """Reconstruction gap of a row: means over the normal test images (the headline) and over
    the category's defect images (informational: it includes the defects); NaN without one."""
    return {
        "gap_rmse": _mean(normal.gap_rmse),
        "gap_p99": _mean(normal.gap_p99),
        "gap_rmse_defect": _mean(defect.gap_rmse),
    }


def _batch_maps(batch: Any, score_size: int | None) -> Any:
    """The batch's anomaly maps as B×H×W float, resized (bilinear) to ``score_size``."""
    import torch.nn.functional as F

    maps = batch.anomaly_map.detach().float().cpu()
    if maps.ndim == 3:
        maps = maps[:, None]
    if score_size is not None and maps.shape[-2:] != (score_size, score_size):
        maps = F.interpolate(maps, size=(score_size, score_size), mode="bilinear")
    return maps[:, 0]


def _batch_gts(batch: Any, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Ground-truth masks as bool arrays of the map's ``shape`` (nearest resize; all-normal
    where the batch has none)."""
    import torch.nn.functional as F

    if batch.gt_mask is None:
        return [np.zeros(shape, bool) for _ in range(len(batch.image_path))]
    gts = batch.gt_mask.detach().cpu().bool()
    if gts.ndim == 4:
        gts = gts[:, 0]
    if tuple(gts.shape[-2:]) != tuple(shape):
        gts = F.interpolate(gts[:, None].float(), size=shape, mode="nearest")[:, 0].bool()
    return list(gts.numpy())


def _restored(image: Any, box: tuple[float, float, float, float] | None) -> np.ndarray:
    """A restored image as H×W×C, cropped like its map when the input was padded."""
    array = image.detach().float().cpu().numpy()
    if box is not None:
        array = crop_to_box(array, box)
    return array.transpose(1, 2, 0)


def _collect(out: Predictions, batch: Any, score_size: int | None, boxes: dict, keep: int) -> None:
    maps = _batch_maps(batch, score_size)
    gts = _batch_gts(batch, tuple(maps.shape[-2:]))
    scores = batch.pred_score
    # Set by models that restore the image (GAN inversion); no model is special-cased.
    restored = getattr(batch, "restored_image", None)
    out.gap_rmse += _per_image(getattr(batch, "reconstruction_rmse", None), maps.shape[0])
    out.gap_p99 += _per_image(getattr(batch, "reconstruction_p99", None), maps.shape[0])
    for i in range(maps.shape[0]):
        amap, gt = maps[i].numpy(), gts[i]
        score = float(scores.reshape(-1)[i]) if scores is not None else float(amap.max())
        box = boxes.get(str(batch.image_path[i]))
        if box is not None:  # padded to a square: score the original image's pixels only
            amap, gt = crop_to_box(amap, box), crop_to_box(gt, box)
        out.maps.append(amap)
        out.gts.append(gt)
        out.scores.append(score)
        kept = restored is not None and len(out.restored) < keep
        out.restored.append(_restored(restored[i], box) if kept else None)
        out.paths.append(str(batch.image_path[i]))


def predict(
    engine: Any, model: Any, loader: Any, keep_restored: int = 0, score_size: int | None = None
) -> Predictions:
    """Predict ``loader``; maps are resized (bilinear) to ``score_size`` when given and cropped
    back to the original image where the loader padded it."""
    out = Predictions()
    if len(loader.dataset) == 0:
        return out
    boxes = getattr(loader.dataset, "boxes", {})  # filled while predicting (square="pad")
    start = time.perf_counter()
    batches = engine.predict(model=model, dataloaders=loader, return_predictions=True) or []
    out.seconds = time.perf_counter() - start
    for batch in batches:
        _collect(out, batch, score_size, boxes, keep_restored)
    return out


def predict_groups(
    engine: Any,
    model: Any,
    groups: list[ImageGroup],
    batch_size: int,
    keep_restored: int,
    score_size: int | None = None,
    geometry: Geometry = AS_IS,
) -> list[Predictions]:
    """One ``engine.predict`` call over several image lists (each call costs seconds of set-up);
    the wall time is shared evenly over the images."""
    images = [p for g in groups for p in g[0]]
    masks = [m for g in groups for m in (g[1] if g[1] is not None else [None] * len(g[0]))]
    labels = [g[2] for g in groups for _ in g[0]]
    loader = image_loader(images, masks, labels, batch_size, geometry=geometry)
    every = predict(engine, model, loader, len(images), score_size)
    per_image = every.seconds / max(len(images), 1)
    out, start = [], 0
    for group in groups:
        n = len(group[0])
        out.append(every.part(start, start + n, keep_restored, per_image * n))
        start += n
    return out
