"""One unit of work: one model on one dataset and seed. Fit it (or load shared weights), predict
every category, score each into a ``ResultRow``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BenchmarkConfig, ModelSpec
from .data import DatasetInfo
from .images import Geometry, image_loader
from .metrics import category_metrics
from .models import anomaly_map_is_mask, build_model, load_fitted, model_form, settings_for
from .predict import Predictions, clean_twins, gap_columns, predict_groups, restoration_columns
from .resume import SharedWeights
from .rows import ResultRow

# (normal test, calibration, defect) predictions of one category
CategoryPredictions = tuple[Predictions, Predictions, Predictions]


@dataclass
class Fit:
    """A fitted model of one dataset and seed, with what its rows report."""

    model: Any
    engine: Any
    seconds: float
    work: Path
    calibration_seconds: float = 0.0


def _engine(cfg: BenchmarkConfig, spec: ModelSpec, work: Path, label: str) -> Any:
    from ..engine import cpu_engine

    return cpu_engine(work, label=label, keep_checkpoints=cfg.keep_checkpoints, **spec.trainer_args)


def _geometry(cfg: BenchmarkConfig, data: DatasetInfo, spec: ModelSpec) -> Geometry:
    return Geometry(data.square, spec.input_size or cfg.image_size, data.pad_shape)


def fit_unit(
    cfg: BenchmarkConfig,
    data: DatasetInfo,
    spec: ModelSpec,
    cls: type,
    seed: int,
    work: Path,
    weights: SharedWeights | None,
    engine_dir: Path | None = None,
) -> Fit:
    """Fit ``spec`` on the dataset's training images, or load ``weights``: its source's
    (``fit_from``) or its own fit kept by an earlier run. ``engine_dir``: where anomalib's
    Engine writes (default ``work``; parts of a unit running at once each get their own, since
    the Engine numbers its version folders by looking at what exists)."""
    from lightning.pytorch import seed_everything

    work.mkdir(parents=True, exist_ok=True)
    seed_everything(seed, verbose=False)
    model = build_model(cls, spec, cfg, seed, work)
    engine_dir = engine_dir or work
    engine = _engine(cfg, spec, engine_dir, f"{spec.name} · {data.name} · seed {seed}")
    if weights is not None:
        load_fitted(model, weights.state_dict, spec)
        seconds = weights.seconds
    else:
        geometry = _geometry(cfg, data, spec)
        loader = image_loader(
            data.train, None, 0, cfg.train_batch_size, shuffle=True, geometry=geometry
        )
        start = time.perf_counter()
        engine.fit(model=model, train_dataloaders=loader)
        seconds = time.perf_counter() - start
    fit = Fit(model, engine, seconds, work)
    if getattr(model, "calibrates_on_normal_images", False):
        # Label-free set-up on the held-out normal images (the ones that also set the
        # label-free threshold); reported in this model's fit time, not passed on by fit_from.
        start = time.perf_counter()
        geometry = _geometry(cfg, data, spec)
        loader = image_loader(data.calibration, None, 0, cfg.eval_batch_size, geometry=geometry)
        engine.validate(model=model, dataloaders=loader)
        fit.calibration_seconds = time.perf_counter() - start
    return fit


def predict_categories(
    cfg: BenchmarkConfig, data: DatasetInfo, spec: ModelSpec, fit: Fit, skip: set[str]
) -> Iterator[tuple[str, CategoryPredictions]]:
    """The predictions of every category but ``skip``. Categories with the model's default
    settings share one prediction pass (with the normal images); one with its own settings gets
    its own."""
    normals = [(data.normal_test, None, 0), (data.calibration, None, 0)]
    args = {
        "batch_size": cfg.eval_batch_size,
        "keep_restored": cfg.qualitative_images,
        "score_size": cfg.image_size if spec.input_size else None,
        "geometry": _geometry(cfg, data, spec),
        # the clean image under each defect (synthetic builds with test/good), for the
        # restoration metrics of a model that restores
        "twins": clean_twins(data.root, data.categories),
    }
    own = spec.init_args_per_category
    todo = [c for c in data.categories if c not in skip]
    shared = [c for c in todo if not own.get(c)]
    by_category = {}
    if shared:
        groups = normals + [(data.categories[c], data.masks[c], 1) for c in shared]
        normal, calib, *defects = predict_groups(fit.engine, fit.model, groups, **args)
        by_category = {c: (normal, calib, d) for c, d in zip(shared, defects, strict=True)}
    for cat in todo:
        if cat not in by_category:
            with settings_for(fit.model, own[cat]):
                group = (data.categories[cat], data.masks[cat], 1)
                preds = predict_groups(fit.engine, fit.model, [*normals, group], **args)
            by_category[cat] = (preds[0], preds[1], preds[2])
        yield cat, by_category[cat]


def category_row(
    cfg: BenchmarkConfig,
    data: DatasetInfo,
    spec: ModelSpec,
    cls: type,
    seed: int,
    fit: Fit,
    cat: str,
    preds: CategoryPredictions,
) -> ResultRow:
    """Score one category's predictions."""
    normal, calib, pred = preds
    masks = data.masks[cat]
    metrics = category_metrics(
        pred.maps,
        pred.gts if masks is not None else None,
        normal.maps,
        calib.maps,
        pred.scores,
        normal.scores,
        percentile=cfg.label_free_percentile,
        mask_map=anomaly_map_is_mask(fit.model, spec),
    )
    settings = spec.init_args_per_category.get(cat, {})
    fitted = getattr(fit.model, "fitted_settings", dict)()
    return ResultRow(
        model=spec.name,
        model_class=cls.__name__,
        form=model_form(cls, spec),
        dataset=data.name,
        category=cat,
        seed=seed,
        image_size=cfg.image_size,
        n_defect=len(pred),
        n_normal=len(normal),
        n_calibration=len(calib),
        pixel_metrics=masks is not None,
        metrics=metrics,
        gap=gap_columns(normal, pred),
        restoration=restoration_columns(normal, pred),
        fit_seconds=fit.seconds + fit.calibration_seconds,
        fit_from=spec.fit_from or "",
        test_seconds_per_image=pred.seconds / max(len(pred), 1),
        init_args=json.dumps(
            {**spec.init_args, **settings, **({"fitted": fitted} if fitted else {})}, default=str
        ),
    )


def samples(pred: Predictions, threshold: float, count: int) -> list[dict[str, Any]]:
    """The first ``count`` defect images for qualitative.png (``pred``: map at the dataset's
    best threshold)."""
    return [
        {
            "path": pred.paths[i],
            "gt": pred.gts[i],
            "map": pred.maps[i],
            "pred": pred.maps[i] >= threshold if not math.isnan(threshold) else None,
            "restored": pred.restored[i],
        }
        for i in range(min(count, len(pred)))
    ]
