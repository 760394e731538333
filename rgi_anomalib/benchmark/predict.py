"""Predict image lists with a fitted model and keep what the metrics need, per image."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .images import AS_IS, Geometry, ImageListDataset, crop_to_box, image_loader
from .metrics import absorption_ratio, masked_psnr, pixel_residual, restoration_metrics


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
    # Restoration under the defect (metrics.py), per image; NaN where not measured (no
    # restoration, no clean twin, no mask). ``normal_residual``: the residual map r of a normal
    # image (label 0) with a restoration, else None.
    absorption: list[float] = field(default_factory=list)
    absorption_delta: list[float] = field(default_factory=list)
    restoration_psnr: list[float] = field(default_factory=list)
    defect_residual: list[float] = field(default_factory=list)
    normal_residual: list[np.ndarray | None] = field(default_factory=list)
    seconds: float = 0.0
    # While predicting: the restorations of the clean twins (normal images, predicted before
    # the defect images in one pass), by resolved path, for ``absorption_delta``.
    twin_restored: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

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
            absorption=self.absorption[start:stop],
            absorption_delta=self.absorption_delta[start:stop],
            restoration_psnr=self.restoration_psnr[start:stop],
            defect_residual=self.defect_residual[start:stop],
            normal_residual=self.normal_residual[start:stop],
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


def restoration_columns(normal: Predictions, defect: Predictions) -> dict[str, float]:
    """Restoration under the defect of a row (``metrics.restoration_metrics``): the category's
    defect images against its clean twins, the residual floor from the normal test images."""
    floors = [r for r in normal.normal_residual if r is not None]
    return restoration_metrics(
        defect.absorption,
        defect.restoration_psnr,
        defect.defect_residual,
        floors,
        defect.absorption_delta,
    )


def clean_twins(root: Path, categories: dict[str, list[Path]]) -> dict[str, Path]:
    """Defect image (resolved path) -> its clean twin, where ``root`` is a synthetic_btad build
    written with its test/good (``include_test_good``): the manifest's normal test image of the
    same base (``base_source``) and file name, i.e. base i before its defect was pasted. Empty
    for any other dataset: the restoration metrics that need the clean image are then absent."""
    import csv

    import synthetic_btad

    if not synthetic_btad.is_dataset(root):
        return {}
    summary = synthetic_btad.load_summary(root)
    if not summary.layout.get("normal_test_dir"):
        return {}
    with (summary.root / synthetic_btad.MANIFEST_FILE).open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    good = {(Path(r["file"]).name, r["base_source"]): r["file"] for r in rows if not r["mask_file"]}
    by_file = {(summary.root / r["file"]).resolve(): r for r in rows if r["mask_file"]}
    twins = {}
    for path in (p for images in categories.values() for p in images):
        row = by_file.get(Path(path).resolve())
        twin = good.get((Path(path).name, row["base_source"])) if row is not None else None
        if twin is not None and (summary.root / twin).is_file():
            twins[str(Path(path).resolve())] = summary.root / twin
    return twins


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


def _as_seen(
    paths: list[Path], geometry: Geometry, box: tuple | None, shape: tuple[int, ...]
) -> list[np.ndarray]:
    """Images read as the loader reads them (``geometry``), cropped to ``box`` and resized
    (bilinear) to ``shape``: H×W×C in [0, 1], pixel for pixel with the row's maps and masks."""
    dataset = ImageListDataset(paths, None, 0, geometry)
    return [_to_shape(dataset[i].image, box, shape) for i in range(len(paths))]


def _to_shape(image: Any, box: tuple | None, shape: tuple[int, ...]) -> np.ndarray:
    """A C×H×W tensor cropped to ``box`` and resized to ``shape``, as H×W×C numpy."""
    import torch
    import torch.nn.functional as F

    image = torch.as_tensor(image).detach().float().cpu()
    if box is not None:
        image = crop_to_box(image, box)
    if tuple(image.shape[-2:]) != tuple(shape):
        image = F.interpolate(image[None], size=tuple(shape), mode="bilinear", antialias=True)
        image = image[0].clamp(0, 1)
    return image.permute(1, 2, 0).numpy()


def _restoration_values(
    out: Predictions,
    restored: Any,
    path: str,
    gt: np.ndarray,
    normal: bool,
    box: tuple | None,
    geometry: Geometry,
    twin: Path | None,
    is_twin: bool = False,
) -> None:
    """One image's restoration values (metrics.py) at the scoring resolution (``gt``'s shape)."""
    nan = math.nan
    if restored is None:
        out.absorption.append(nan)
        out.absorption_delta.append(nan)
        out.restoration_psnr.append(nan)
        out.defect_residual.append(nan)
        out.normal_residual.append(None)
        return
    shape = gt.shape
    g = _to_shape(restored, box, shape)
    images = _as_seen([Path(path)] + ([twin] if twin is not None else []), geometry, box, shape)
    x = images[0]
    residual = pixel_residual(x, g)
    has_mask = bool(gt.any())
    out.defect_residual.append(float(residual[gt].mean()) if has_mask else nan)
    out.normal_residual.append(residual.astype(np.float32) if normal else None)
    if is_twin:
        out.twin_restored[str(Path(path).resolve())] = g.astype(np.float32)
    if twin is not None and has_mask:
        g_clean = out.twin_restored.get(str(Path(twin).resolve()))
        out.absorption.append(absorption_ratio(x, g, images[1], gt))
        out.absorption_delta.append(
            absorption_ratio(x, g, images[1], gt, g_clean) if g_clean is not None else nan
        )
        out.restoration_psnr.append(masked_psnr(g, images[1], gt))
    else:
        out.absorption.append(nan)
        out.absorption_delta.append(nan)
        out.restoration_psnr.append(nan)


def _collect(
    out: Predictions,
    batch: Any,
    score_size: int | None,
    boxes: dict,
    keep: int,
    geometry: Geometry = AS_IS,
    twins: dict[str, Path] | None = None,
) -> None:
    maps = _batch_maps(batch, score_size)
    gts = _batch_gts(batch, tuple(maps.shape[-2:]))
    scores = batch.pred_score
    # Set by models that restore the image (GAN inversion); no model is special-cased.
    restored = getattr(batch, "restored_image", None)
    out.gap_rmse += _per_image(getattr(batch, "reconstruction_rmse", None), maps.shape[0])
    out.gap_p99 += _per_image(getattr(batch, "reconstruction_p99", None), maps.shape[0])
    labels = getattr(batch, "gt_label", None)
    twin_paths = {str(Path(t).resolve()) for t in (twins or {}).values()}
    for i in range(maps.shape[0]):
        amap, gt, path = maps[i].numpy(), gts[i], str(batch.image_path[i])
        score = float(scores.reshape(-1)[i]) if scores is not None else float(amap.max())
        box = boxes.get(path)
        if box is not None:  # padded to a square: score the original image's pixels only
            amap, gt = crop_to_box(amap, box), crop_to_box(gt, box)
        out.maps.append(amap)
        out.gts.append(gt)
        out.scores.append(score)
        kept = restored is not None and len(out.restored) < keep
        out.restored.append(_restored(restored[i], box) if kept else None)
        out.paths.append(path)
        # Restoration under the defect: every image the model restored (not only the kept ones)
        normal = labels is not None and int(labels.reshape(-1)[i]) == 0
        resolved = str(Path(path).resolve())
        twin = (twins or {}).get(resolved) if not normal else None
        is_twin = normal and resolved in twin_paths
        image = restored[i] if restored is not None else None
        _restoration_values(out, image, path, gt, normal, box, geometry, twin, is_twin)


def predict(
    engine: Any,
    model: Any,
    loader: Any,
    keep_restored: int = 0,
    score_size: int | None = None,
    twins: dict[str, Path] | None = None,
) -> Predictions:
    """Predict ``loader``; maps are resized (bilinear) to ``score_size`` when given and cropped
    back to the original image where the loader padded it. ``twins`` (``clean_twins``): the
    clean image of each defect image, for the restoration metrics of a model that restores."""
    out = Predictions()
    if len(loader.dataset) == 0:
        return out
    boxes = getattr(loader.dataset, "boxes", {})  # filled while predicting (square="pad")
    start = time.perf_counter()
    batches = engine.predict(model=model, dataloaders=loader, return_predictions=True) or []
    out.seconds = time.perf_counter() - start
    geometry = getattr(loader.dataset, "geometry", AS_IS)
    for batch in batches:
        _collect(out, batch, score_size, boxes, keep_restored, geometry, twins)
    return out


def predict_groups(
    engine: Any,
    model: Any,
    groups: list[ImageGroup],
    batch_size: int,
    keep_restored: int,
    score_size: int | None = None,
    geometry: Geometry = AS_IS,
    twins: dict[str, Path] | None = None,
) -> list[Predictions]:
    """One ``engine.predict`` call over several image lists (each call costs seconds of set-up);
    the wall time is shared evenly over the images."""
    images = [p for g in groups for p in g[0]]
    masks = [m for g in groups for m in (g[1] if g[1] is not None else [None] * len(g[0]))]
    labels = [g[2] for g in groups for _ in g[0]]
    loader = image_loader(images, masks, labels, batch_size, geometry=geometry)
    every = predict(engine, model, loader, len(images), score_size, twins)
    per_image = every.seconds / max(len(images), 1)
    out, start = [], 0
    for group in groups:
        n = len(group[0])
        out.append(every.part(start, start + n, keep_restored, per_image * n))
        start += n
    return out
