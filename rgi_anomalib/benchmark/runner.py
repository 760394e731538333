"""Train each model once per dataset and seed, test it on every category, score the maps.

config -> datasets (``data``) -> per model: fit (``models``), predict (``predict``), score
(``metrics``) -> one ``ResultRow`` per category -> ``report`` / ``check``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..utils import silence_known_warnings
from .config import BenchmarkConfig, ModelSpec
from .data import DatasetInfo, check_per_category, prepare_dataset
from .models import check_model_spec
from .resume import ResumeOptions, UnitResume, work_dir
from .unit import Fit, category_row, fit_unit, predict_categories, samples
from .unit_store import Scored, drop_categories, save_category, save_done

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


def _progress(console: Any) -> Any:
    """The run's steps (fit, each category, test per model): a rich bar on a terminal, else one
    plain line per step (a log shows where a run of hours is)."""
    if not console.is_terminal:
        return _PlainSteps(console)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, transient=False)


class _PlainSteps:
    """The part of rich's ``Progress`` the runner uses, as a line per new step description."""

    def __init__(self, console: Any) -> None:
        self.console, self.total, self.completed = console, 0, 0

    def __enter__(self) -> _PlainSteps:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: int) -> int:
        self.total = total
        return 0

    def update(self, task: int, description: str) -> None:
        text = f"[{self.completed}/{self.total} steps] {description}"
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def advance(self, task: int, advance: int = 1) -> None:
        self.completed += advance


@dataclass
class _Context:
    """What one model's run needs besides its spec: the dataset and seed, where to report, and
    what the units of this dataset and seed may reuse."""

    cfg: BenchmarkConfig
    data: DatasetInfo
    seed: int
    console: Any
    progress: Any
    task: Any
    resume: UnitResume


def _in_dataset_order(data: DatasetInfo, samples: dict[str, Any]) -> dict[str, Any]:
    """Per-category samples in the dataset's category order (saved ones load sorted by name)."""
    return {cat: samples[cat] for cat in data.categories if cat in samples}


def _reused(ctx: _Context, spec: ModelSpec, saved: Scored, qualitative: Qualitative | None) -> list:
    """The rows (and samples) of a unit finished by an earlier run."""
    if qualitative is not None and saved.samples:
        qualitative[spec.name] = _in_dataset_order(ctx.data, saved.samples)
    ctx.progress.advance(ctx.task, 2 + len(ctx.data.categories))
    return saved.rows


def _run_model(
    ctx: _Context,
    spec: ModelSpec,
    cls: type,
    qualitative: Qualitative | None,
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Fit (or share) one model, then one row per category; qualitative samples are kept for
    the run's first dataset and seed (``qualitative`` given). What an earlier run finished counts
    where ``ctx.resume`` says so (``--resume``). ``only``: score just these categories and leave
    the unit unfinished (a part of a unit split by category; ``finish_unit`` ends it)."""
    resume, tag = ctx.resume, f"{spec.name} · {ctx.data.name} · seed {ctx.seed}"
    saved = resume.rows_before_fit(spec)
    if saved is not None and only is not None:
        saved = Scored(
            [r for r in saved.rows if r["category"] in only],
            {c: v for c, v in saved.samples.items() if c in only},
            saved.weights_sha256,
        )
    if saved is not None:
        return _reused(ctx, spec, saved, qualitative)
    ctx.progress.update(ctx.task, description=f"fit  {tag}")
    weights = resume.weights_to_load(spec)
    work = resume.work(spec)
    engine_dir = work / "parts" / only[0] if only else None
    fit = fit_unit(ctx.cfg, ctx.data, spec, cls, ctx.seed, work, weights, engine_dir)
    resume.share_fit(spec, fit.model.state_dict(), fit.seconds)
    saved = resume.rows_after_fit(spec)
    if saved is not None:
        return _reused(ctx, spec, saved, qualitative)
    ctx.progress.advance(ctx.task)
    ctx.progress.update(ctx.task, description=f"test {tag}")
    rows = _test(ctx, spec, cls, fit, qualitative, only)
    ctx.progress.advance(ctx.task)  # the test step itself
    shutil.rmtree(fit.work / "empty_dtd", ignore_errors=True)
    return rows


def _test(
    ctx: _Context,
    spec: ModelSpec,
    cls: type,
    fit: Fit,
    qualitative: Qualitative | None,
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per category (of ``only``, if given): kept from an earlier run where
    ``ctx.resume`` says so, else predicted and scored (each saved as soon as it is scored); the
    unit is then done (not with ``only``: its other categories are scored elsewhere)."""
    cfg, data, resume = ctx.cfg, ctx.data, ctx.resume
    categories = list(data.categories) if only is None else only
    kept = {c: v for c, v in resume.scored_categories(spec).items() if c in categories}
    by_category = {cat: scored.rows for cat, scored in kept.items()}
    for cat, scored in kept.items():
        if qualitative is not None and scored.samples:
            qualitative.setdefault(spec.name, {})[cat] = scored.samples
    ctx.progress.advance(ctx.task, len(kept))
    key, sha256 = resume.keys[spec.name], resume.weights_sha256(spec)
    skip = set(kept) | (set(data.categories) - set(categories))
    for cat, preds in predict_categories(cfg, data, spec, fit, skip=skip):
        row = category_row(cfg, data, spec, cls, ctx.seed, fit, cat, preds)
        by_category[cat] = row.as_dict()
        m = row.metrics
        shown = None
        if qualitative is not None:
            shown = samples(preds[2], m["dataset_threshold"], cfg.qualitative_images)
            qualitative.setdefault(spec.name, {})[cat] = shown
        save_category(fit.work, key, cat, by_category[cat], shown, sha256)
        ctx.console.log(
            f"{spec.name} · {data.name} · seed {ctx.seed} {cat}: Dice oracle "
            f"{m['dice_oracle_mean']:.3f}, pixel AUROC {m['pixel_auroc']:.3f}, "
            f"AUPRO {m['aupro']:.3f}"
        )
        ctx.progress.advance(ctx.task)
    rows = [by_category[cat] for cat in categories]
    if qualitative is not None and spec.name in qualitative:  # resumed categories came first
        qualitative[spec.name] = _in_dataset_order(data, qualitative[spec.name])
    if only is not None:
        return rows
    save_done(fit.work, key, rows, (qualitative or {}).get(spec.name), sha256)
    drop_categories(fit.work)
    return rows


class NoSteps:
    """A progress that shows nothing: a unit run apart (a Ray task) reports through its log."""

    def add_task(self, description: str, total: int) -> int:
        return 0

    def update(self, task: int, description: str) -> None:
        return None

    def advance(self, task: int, advance: int = 1) -> None:
        return None


def prepare_datasets(
    cfg: BenchmarkConfig, console: Any, prepared: dict[str, DatasetInfo] | None
) -> tuple[list[DatasetInfo], list[str]]:
    """Every dataset of the config (those in ``prepared`` as they are, the others prepared,
    built if need be, and checked), and the run's notes (printed)."""
    prepared = prepared or {}
    datasets = [prepared.get(d.name) or prepare_dataset(d, cfg, console.log) for d in cfg.datasets]
    check_per_category(cfg.models, datasets)
    notes = [n for m in cfg.models for n in m.notes] + [n for d in datasets for n in d.notes]
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    return datasets, notes


def run_unit(
    cfg: BenchmarkConfig,
    data: DatasetInfo,
    seed: int,
    model: str,
    resume: ResumeOptions,
    console: Any,
    keep_samples: bool,
    source_trained: bool = False,
    only: list[str] | None = None,
) -> UnitOutcome:
    """One model on one dataset and seed, on its own (a Ray task): its source's weights
    (``fit_from``) come from the run directory, where the source's unit saved them. ``only``:
    one part of a unit split by category (``splits_by_category``), left for ``finish_unit``."""
    spec = next(m for m in cfg.models if m.name == model)
    cls = check_model_spec(spec, cfg)
    dataset = next(d for d in cfg.datasets if d.name == data.name)
    policy = UnitResume(cfg, dataset, seed, resume, console.log)
    policy.load_source_fit(spec, source_trained)
    progress = NoSteps()
    ctx = _Context(cfg, data, seed, console, progress, 0, policy)
    qualitative: Qualitative = {}
    with quiet_lightning():
        rows = _run_model(ctx, spec, cls, qualitative if keep_samples else None, only)
    trained = policy.trained_now(spec)
    return UnitOutcome(rows, qualitative.get(spec.name), policy.reused, trained, policy.keys[model],
                       policy.weights_sha256(spec))  # fmt: skip


def splits_by_category(spec: ModelSpec, data: DatasetInfo) -> bool:
    """Whether a unit may be scored as one task per category with the rows it has as one task:
    a model that loads its weights (``fit_from``: nothing to fit in each part) and predicts every
    category in its own pass (its own settings per category, R-RGI's λ: the same batches)."""
    own = spec.init_args_per_category
    return spec.fit_from is not None and all(own.get(c) for c in data.categories)


def finish_unit(
    cfg: BenchmarkConfig, data: DatasetInfo, seed: int, model: str, parts: list[UnitOutcome]
) -> UnitOutcome:
    """A unit scored in parts (one per category): its rows in the dataset's order, saved as a
    finished unit (``done.json``) for ``--resume``."""
    rows = {row["category"]: row for part in parts for row in part.rows}
    ordered = [rows[cat] for cat in data.categories]
    samples: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        samples.update(part.samples or {})
    samples = _in_dataset_order(data, samples)
    first = parts[0]
    if not all(part.reused for part in parts):
        work = work_dir(cfg.run_dir, model, data.name, seed)
        save_done(work, first.key, ordered, samples or None, first.weights_sha256)
        drop_categories(work)
        shutil.rmtree(work / "parts", ignore_errors=True)  # the parts' Engine folders
    reused = int(all(part.reused for part in parts))
    return UnitOutcome(ordered, samples or None, reused, False, first.key, first.weights_sha256)


@dataclass
class UnitOutcome:
    """What one unit run apart returns to the driver."""

    rows: list[dict[str, Any]]
    samples: dict[str, list[dict[str, Any]]] | None  # category -> qualitative samples
    reused: int  # 1 when its rows came from an earlier run (--resume)
    trained: bool = False  # it trained weights that later units load (fit_from)
    key: str = ""  # the unit's key (resume.py)
    weights_sha256: str | None = None  # of the shared weights it was scored with


def resume_note(cfg: BenchmarkConfig, reused: int) -> str:
    total = len(cfg.models) * len(cfg.seeds) * len(cfg.datasets)
    return f"--resume: {reused} of {total} model runs reused from {cfg.run_dir}/work"


def run_benchmark(
    cfg: BenchmarkConfig,
    console: Any = None,
    prepared: dict[str, DatasetInfo] | None = None,
    resume: ResumeOptions | None = None,
) -> RunResult:
    """Run every model × dataset × seed. ``cfg.run_dir`` must already exist. ``prepared``:
    datasets (by name) already prepared and checked by the caller; the others are prepared here
    (built if need be) and their files checked, before any model is trained. ``resume``: what an
    earlier run in ``cfg.run_dir`` may give (default: nothing)."""
    from anomalib.engine import Engine  # noqa: F401 - imported before its loggers are quietened
    from rich.console import Console

    console = console or Console()
    resume = resume or ResumeOptions()
    t0 = time.perf_counter()
    classes = {m.name: check_model_spec(m, cfg) for m in cfg.models}
    rows: list[dict[str, Any]] = []
    qualitative: Qualitative = {}
    reused = 0
    with quiet_lightning():
        datasets, notes = prepare_datasets(cfg, console, prepared)
        steps = sum(len(cfg.models) * len(cfg.seeds) * (2 + len(d.categories)) for d in datasets)
        with _progress(console) as progress:
            task = progress.add_task("benchmark", total=steps)
            for spec, data in zip(cfg.datasets, datasets, strict=True):
                for seed in cfg.seeds:
                    policy = UnitResume(cfg, spec, seed, resume, console.log)
                    ctx = _Context(cfg, data, seed, console, progress, task, policy)
                    first = seed == cfg.seeds[0] and data is datasets[0]
                    for model in cfg.models:
                        cls = classes[model.name]
                        rows += _run_model(ctx, model, cls, qualitative if first else None)
                    reused += policy.reused
    if resume.enabled:
        notes.append(resume_note(cfg, reused))
        console.print(f"[yellow]note:[/] {notes[-1]}")
    return RunResult(rows, qualitative, notes, time.perf_counter() - t0)
