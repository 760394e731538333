"""Train each model once per dataset and seed, test it on every category, score the maps.

config -> datasets (``data``) -> per model: fit (``models``), predict (``predict``), score
(``metrics``) -> one ``ResultRow`` per category -> ``report`` / ``check``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils import silence_known_warnings
from .config import BenchmarkConfig, DatasetSpec, ModelSpec
from .data import DatasetInfo, check_per_category, prepare_dataset
from .images import Geometry, image_loader
from .metrics import category_metrics
from .models import (
    anomaly_map_is_mask,
    build_model,
    check_model_spec,
    checkpoint_callbacks,
    load_fitted,
    model_form,
    settings_for,
)
from .predict import (
    Predictions,
    clean_twins,
    gap_columns,
    predict_groups,
    restoration_columns,
)
from .resume import (
    Scored,
    drop_categories,
    load_categories,
    load_done,
    load_fitted_state,
    save_category,
    save_done,
    save_fitted,
    unit_key,
    weights_digest,
)
from .rows import ResultRow

# Qualitative samples: model -> category -> [{path, gt, map, pred, restored}]
Qualitative = dict[str, dict[str, list[dict[str, Any]]]]


@dataclass
class RunResult:
    rows: list[dict[str, Any]]  # ResultRow.as_dict(), the form written to results.json
    qualitative: Qualitative
    notes: list[str]
    seconds: float


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's and anomalib's info logs off for the run (restored afterwards); the known
    third-party deprecation warnings silenced by message (``silence_known_warnings``)."""
    names = ["lightning", "lightning.pytorch", "lightning.fabric", "anomalib", "pytorch_lightning"]
    names += [n for n in logging.root.manager.loggerDict if n.startswith(("lightning", "anomalib"))]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    silence_known_warnings()
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@dataclass
class _Fit:
    """A fitted model of one dataset and seed, with what its rows report."""

    model: Any
    engine: Any
    seconds: float
    work: Path
    calibration_seconds: float = 0.0


@dataclass
class _Source:
    """The fitted weights later models load (``fit_from``) and the fit time they report."""

    state_dict: dict[str, Any]
    seconds: float
    sha256: str  # weights_digest(state_dict)
    trained_now: bool  # by this run, not loaded from an earlier run's fitted.pt


def _work_dir(cfg: BenchmarkConfig, data: DatasetInfo, spec: ModelSpec, seed: int) -> Path:
    return cfg.run_dir / "work" / f"{spec.name}_{data.name}_seed{seed}"


def _engine(cfg: BenchmarkConfig, spec: ModelSpec, work: Path) -> Any:
    from anomalib.engine import Engine

    return Engine(
        default_root_dir=str(work),
        logger=False,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=checkpoint_callbacks(cfg.keep_checkpoints),
        **spec.trainer_args,
    )


def _geometry(cfg: BenchmarkConfig, data: DatasetInfo, spec: ModelSpec) -> Geometry:
    return Geometry(data.square, spec.input_size or cfg.image_size, data.pad_shape)


def _fit(
    cfg: BenchmarkConfig,
    data: DatasetInfo,
    spec: ModelSpec,
    cls: type,
    seed: int,
    fitted: dict[str, _Source],
) -> _Fit:
    """Fit ``spec`` on the dataset's training images, or take the weights of ``fit_from``."""
    from lightning.pytorch import seed_everything

    work = _work_dir(cfg, data, spec, seed)
    work.mkdir(parents=True, exist_ok=True)
    seed_everything(seed, verbose=False)
    model = build_model(cls, spec, cfg, seed, work)
    engine = _engine(cfg, spec, work)
    own = fitted.get(spec.name) if spec.fit_from is None else None
    if own is not None:  # fitted by an earlier run that stopped while testing (--resume)
        load_fitted(model, own.state_dict, spec)
        seconds = own.seconds
    elif spec.fit_from is None:
        loader = image_loader(
            data.train,
            None,
            0,
            cfg.train_batch_size,
            shuffle=True,
            geometry=_geometry(cfg, data, spec),
        )
        start = time.perf_counter()
        engine.fit(model=model, train_dataloaders=loader)
        seconds = time.perf_counter() - start
    else:
        source = fitted[spec.fit_from]
        load_fitted(model, source.state_dict, spec)
        seconds = source.seconds
    fit = _Fit(model, engine, seconds, work)
    if getattr(model, "calibrates_on_normal_images", False):
        # Label-free set-up on the held-out normal images (the ones that also set the
        # label-free threshold); reported in this model's fit time, not passed on by fit_from.
        start = time.perf_counter()
        loader = image_loader(
            data.calibration, None, 0, cfg.eval_batch_size, geometry=_geometry(cfg, data, spec)
        )
        engine.validate(model=model, dataloaders=loader)
        fit.calibration_seconds = time.perf_counter() - start
    return fit


# (normal test, calibration, defect) predictions of one category
CategoryPredictions = tuple[Predictions, Predictions, Predictions]


def _predict_categories(
    cfg: BenchmarkConfig, data: DatasetInfo, spec: ModelSpec, fit: _Fit, skip: set[str]
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


def _row(
    cfg: BenchmarkConfig,
    data: DatasetInfo,
    spec: ModelSpec,
    cls: type,
    seed: int,
    fit: _Fit,
    cat: str,
    preds: CategoryPredictions,
) -> ResultRow:
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


def _samples(pred: Predictions, threshold: float, count: int) -> list[dict[str, Any]]:
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


def _progress(console: Any) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, transient=False)


@dataclass
class _Context:
    """What one model's run needs besides its spec: the dataset and seed, where to report, and
    the units of this dataset and seed (their keys, the ones finished earlier, shared weights)."""

    cfg: BenchmarkConfig
    data: DatasetInfo
    seed: int
    console: Any
    progress: Any
    task: Any
    keys: dict[str, str]
    done: dict[str, Scored]
    fitted: dict[str, _Source]
    # model -> category -> its row, scored by an earlier run of an unfinished unit
    partial: dict[str, dict[str, Scored]]
    # finished sources whose weights were not kept: they train again before their rows count
    retrain: set[str]
    reused: int = 0


def _unit_keys(cfg: BenchmarkConfig, spec: DatasetSpec, seed: int) -> dict[str, str]:
    keys: dict[str, str] = {}
    for model in cfg.models:
        source = keys[model.fit_from] if model.fit_from else ""
        keys[model.name] = unit_key(cfg, spec, model, seed, source)
    return keys


def _finished_units(
    cfg: BenchmarkConfig, data: DatasetInfo, seed: int, keys: dict[str, str]
) -> tuple[dict[str, Scored], dict[str, _Source], dict[str, Any], set[str]]:
    """With ``cfg.resume``: the units finished earlier with the same key; the saved weights of
    those that a pending unit loads and of pending units whose fit finished; the categories that
    pending units scored already; the finished sources that a pending unit loads but whose
    weights were not kept (they train again)."""
    if not cfg.resume:
        return {}, {}, {}, set()
    done = {}
    for spec in cfg.models:
        found = load_done(_work_dir(cfg, data, spec, seed), keys[spec.name])
        if found is not None:
            done[spec.name] = found
    sources, retrain = {}, set()
    for spec in cfg.models:
        loaded_later = any(m.fit_from == spec.name and m.name not in done for m in cfg.models)
        refit = spec.name not in done and spec.fit_from is None
        if loaded_later or refit:
            saved = load_fitted_state(_work_dir(cfg, data, spec, seed), keys[spec.name])
            if saved is not None:
                state, seconds = saved
                sources[spec.name] = _Source(state, seconds, weights_digest(state), False)
            elif spec.name in done:
                retrain.add(spec.name)
    partial = {}
    for spec in cfg.models:
        if spec.name not in done:
            scored = load_categories(_work_dir(cfg, data, spec, seed), keys[spec.name])
            if scored:
                partial[spec.name] = scored
    return done, sources, partial, retrain


def _scored_with_these_weights(ctx: _Context, spec: ModelSpec, saved: Scored) -> bool:
    """Whether saved rows of ``spec`` came from the shared weights this run holds. A source
    that trains again may not reproduce its weights bit for bit (another CPU, another thread
    count); rows saved without a digest count only with the weights kept on disk."""
    source = _shared_source(ctx, spec)
    if source is None:  # nothing shared was loaded or trained: the unit's key decides
        return True
    if saved.weights_sha256 is None:
        return not source.trained_now
    return saved.weights_sha256 == source.sha256


def _shared_source(ctx: _Context, spec: ModelSpec) -> _Source | None:
    """The shared weights ``spec`` is scored with this run: its source's, or its own."""
    return ctx.fitted.get(spec.fit_from or spec.name)


def _share_fit(ctx: _Context, spec: ModelSpec, fit: _Fit) -> None:
    """Keep (and save, for --resume) the fitted weights while a later model loads them: a copy
    taken before testing, so a resumed run loads exactly what an uninterrupted one does."""
    if spec.name in ctx.fitted:  # loaded from this unit's own fitted.pt (--resume)
        return
    if spec.name in ctx.cfg.fit_sources or any(m.fit_from == spec.name for m in ctx.cfg.models):
        state = {k: v.detach().clone() for k, v in fit.model.state_dict().items()}
        ctx.fitted[spec.name] = _Source(state, fit.seconds, weights_digest(state), True)
        save_fitted(fit.work, ctx.keys[spec.name], state, fit.seconds)


def _reuse(ctx: _Context, spec: ModelSpec, qualitative: Qualitative | None, why: str) -> list:
    """The rows (and samples) of a unit finished by an earlier run."""
    saved = ctx.done[spec.name]
    if qualitative is not None and saved.samples:
        qualitative[spec.name] = _in_dataset_order(ctx.data, saved.samples)
    ctx.console.log(f"{spec.name} · {ctx.data.name} · seed {ctx.seed}: {why} (--resume)")
    ctx.progress.advance(ctx.task, 2 + len(ctx.data.categories))
    ctx.reused += 1
    return saved.rows


def _in_dataset_order(data: DatasetInfo, samples: dict[str, Any]) -> dict[str, Any]:
    """Per-category samples in the dataset's category order (saved ones load sorted by name)."""
    return {cat: samples[cat] for cat in data.categories if cat in samples}


def _run_model(
    ctx: _Context, spec: ModelSpec, cls: type, qualitative: Qualitative | None
) -> list[dict[str, Any]]:
    """Fit (or share) one model, then one row per category; qualitative samples are kept for
    the run's first dataset and seed (``qualitative`` given). A unit finished by an earlier run
    (``--resume``, same key) gives its saved rows instead, if they were scored with the shared
    weights this run holds (a source whose weights were not kept trains first to find out)."""
    cfg, data, progress, task = ctx.cfg, ctx.data, ctx.progress, ctx.task
    tag = f"{spec.name} · {data.name} · seed {ctx.seed}"
    saved = ctx.done.get(spec.name)
    if saved is not None and spec.name not in ctx.retrain:
        if _scored_with_these_weights(ctx, spec, saved):
            return _reuse(ctx, spec, qualitative, "finished by an earlier run, its rows reused")
        ctx.console.log(f"{tag}: {spec.fit_from} trained again to other weights: runs again")
    progress.update(task, description=f"fit  {tag}")
    fit = _fit(cfg, data, spec, cls, ctx.seed, ctx.fitted)
    _share_fit(ctx, spec, fit)
    if saved is not None and spec.name in ctx.retrain:
        sha = ctx.fitted[spec.name].sha256[:12]
        if _scored_with_these_weights(ctx, spec, saved):
            # what loads these weights reports the fit time of the rows kept, as before
            ctx.fitted[spec.name].seconds = saved.rows[0]["fit_seconds"]
            return _reuse(ctx, spec, qualitative, f"trained again to the same weights ({sha})")
        ctx.console.log(f"{tag}: trained again to other weights ({sha}): tested again")
    progress.advance(task)
    partial = {
        cat: scored
        for cat, scored in ctx.partial.get(spec.name, {}).items()
        if _scored_with_these_weights(ctx, spec, scored)
    }
    if partial:
        ctx.console.log(f"{tag}: {', '.join(partial)} scored by an earlier run, kept (--resume)")
    progress.update(task, description=f"test {tag}")
    by_category = {cat: scored.rows for cat, scored in partial.items()}
    for cat, scored in partial.items():
        if qualitative is not None and scored.samples:
            qualitative.setdefault(spec.name, {})[cat] = scored.samples
    progress.advance(task, len(partial))
    source = _shared_source(ctx, spec)
    sha256 = source.sha256 if source is not None else None
    for cat, preds in _predict_categories(cfg, data, spec, fit, skip=set(partial)):
        row = _row(cfg, data, spec, cls, ctx.seed, fit, cat, preds)
        by_category[cat] = row.as_dict()
        m = row.metrics
        samples = None
        if qualitative is not None:
            samples = _samples(preds[2], m["dataset_threshold"], cfg.qualitative_images)
            qualitative.setdefault(spec.name, {})[cat] = samples
        save_category(fit.work, ctx.keys[spec.name], cat, by_category[cat], samples, sha256)
        ctx.console.log(
            f"{tag} {cat}: Dice oracle {m['dice_oracle_mean']:.3f}, "
            f"pixel AUROC {m['pixel_auroc']:.3f}, AUPRO {m['aupro']:.3f}"
        )
        progress.advance(task)
    progress.advance(task)  # the test step itself
    shutil.rmtree(fit.work / "empty_dtd", ignore_errors=True)
    rows = [by_category[cat] for cat in data.categories]
    if qualitative is not None and spec.name in qualitative:  # resumed categories came first
        qualitative[spec.name] = _in_dataset_order(data, qualitative[spec.name])
    save_done(fit.work, ctx.keys[spec.name], rows, (qualitative or {}).get(spec.name), sha256)
    drop_categories(fit.work)
    return rows


def run_benchmark(
    cfg: BenchmarkConfig, console: Any = None, prepared: dict[str, DatasetInfo] | None = None
) -> RunResult:
    """Run every model × dataset × seed. ``cfg.run_dir`` must already exist. ``prepared``:
    datasets (by name) already prepared and checked by the caller; the others are prepared here
    (built if need be) and their files checked, before any model is trained."""
    from anomalib.engine import Engine  # noqa: F401 - imported before its loggers are quietened
    from rich.console import Console

    console = console or Console()
    t0 = time.perf_counter()
    classes = {m.name: check_model_spec(m, cfg) for m in cfg.models}
    rows: list[dict[str, Any]] = []
    qualitative: Qualitative = {}
    reused = 0
    prepared = prepared or {}
    with quiet_lightning():
        datasets = [
            prepared.get(d.name) or prepare_dataset(d, cfg, console.log) for d in cfg.datasets
        ]
        check_per_category(cfg.models, datasets)
        notes = [n for m in cfg.models for n in m.notes] + [n for d in datasets for n in d.notes]
        for note in notes:
            console.print(f"[yellow]note:[/] {note}")
        steps = sum(len(cfg.models) * len(cfg.seeds) * (2 + len(d.categories)) for d in datasets)
        with _progress(console) as progress:
            task = progress.add_task("benchmark", total=steps)
            for spec, data in zip(cfg.datasets, datasets, strict=True):
                for seed in cfg.seeds:
                    keys = _unit_keys(cfg, spec, seed)
                    found = _finished_units(cfg, data, seed, keys)
                    ctx = _Context(cfg, data, seed, console, progress, task, keys, *found)
                    first = seed == cfg.seeds[0] and data is datasets[0]
                    for model in cfg.models:
                        cls = classes[model.name]
                        rows += _run_model(ctx, model, cls, qualitative if first else None)
                    reused += ctx.reused
    if cfg.resume:
        total = len(cfg.models) * len(cfg.seeds) * len(datasets)
        notes.append(f"--resume: {reused} of {total} model runs reused from {cfg.run_dir}/work")
        console.print(f"[yellow]note:[/] {notes[-1]}")
    return RunResult(rows, qualitative, notes, time.perf_counter() - t0)


def describe_kept(cfg: BenchmarkConfig) -> list[str]:
    """What a later ``--resume`` of this config reuses from ``cfg.run_dir``: one line per model,
    dataset and seed with something kept (its rows, its fitted weights, scored categories)."""
    lines = []
    for spec in cfg.datasets:
        for seed in cfg.seeds:
            keys = _unit_keys(cfg, spec, seed)
            for model in cfg.models:
                work = cfg.run_dir / "work" / f"{model.name}_{spec.name}_seed{seed}"
                if not work.is_dir():
                    continue
                tag = f"{model.name} · {spec.name} · seed {seed}"
                done = load_done(work, keys[model.name])
                if done is not None:
                    lines.append(f"{tag}: finished ({len(done.rows)} categories scored)")
                    continue
                kept = []
                if load_fitted_state(work, keys[model.name]) is not None:
                    kept.append("its fit")
                scored = load_categories(work, keys[model.name])
                if scored:
                    kept.append(f"categories {', '.join(scored)} scored")
                if kept:
                    lines.append(f"{tag}: {' and '.join(kept)} kept, the rest runs again")
    return lines
