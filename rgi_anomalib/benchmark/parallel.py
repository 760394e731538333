"""``--workers N``: the units of a benchmark (one model on one dataset and seed) as Ray tasks.

Without ``ray_address`` Ray starts in this process with ``workers × threads_per_worker`` CPUs
and every unit asks for ``threads_per_worker`` of them, so N units run at once, each with its
own torch thread budget. With ``ray_address`` the units go to an existing cluster, which
decides where. A unit whose model trains on a GPU (``trainer_args: {accelerator: gpu}``) also
asks for one GPU.

Dependencies: a unit that loads another unit's fitted generator (``fit_from``) gets that unit's
task result as an argument, so Ray starts it only after the source finished, wherever either
runs. The weights themselves travel through the run directory
(``work/<source>_<dataset>_seed<k>/fitted.pt``), not Ray's object store: it is where
``--resume`` already looks for them, so a unit that runs again after its worker died, or in a
later resumed run (serial or parallel), loads the same bytes, and the driver never holds every
generator in memory. On a cluster the run directory must therefore be on a filesystem every
node sees (the results are written there too).

A worker that dies takes its unit with it: Ray runs the unit again (``MAX_RETRIES``), and what
the unit had finished (scored categories, its fit) is in the run directory for ``--resume``.
The rows come back in the serial order (dataset, seed, model), and equal the serial run's rows
except for the times (tests/integration/test_parallel.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from .config import BenchmarkConfig, ConfigError, ModelSpec
from .data import DatasetInfo
from .resume import ResumeOptions
from .runner import (
    Qualitative,
    RunResult,
    UnitOutcome,
    finish_unit,
    prepare_datasets,
    quiet_lightning,
    resume_note,
    run_unit,
    splits_by_category,
)

EXTRA = "scale"
# Runs of a unit after its worker process died (Ray's default for tasks is 3).
MAX_RETRIES = 2
# Ray's shared-memory object store only carries the units' rows: keep it small on a laptop.
OBJECT_STORE_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class ParallelOptions:
    """``--workers``, ``--threads-per-worker`` and ``--ray-address``."""

    workers: int
    threads_per_worker: int | None = None  # None: this machine's cores / workers (at least 1)
    ray_address: str | None = None

    def threads(self) -> int:
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // self.workers)


def require_ray() -> Any:
    """The ``ray`` module, or one clear error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"--workers runs the units as Ray tasks, and Ray is not installed: pip install "
            f"'rgi-anomalib[{EXTRA}]' (`make install` installs it)"
        ) from None
    return ray


def check_options(options: ParallelOptions) -> None:
    if options.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {options.workers}")
    if options.threads_per_worker is not None and options.threads_per_worker < 1:
        raise ConfigError(f"--threads-per-worker must be >= 1, got {options.threads_per_worker}")
    require_ray()


def uses_gpu(spec: ModelSpec) -> bool:
    return str(spec.trainer_args.get("accelerator", "cpu")) in ("gpu", "cuda")


def _unit_task(
    cfg: BenchmarkConfig,
    data: DatasetInfo,
    seed: int,
    model: str,
    resume: ResumeOptions,
    keep_samples: bool,
    allowed_modules: tuple[str, ...],
    threads: int,
    only: list[str] | None,
    *sources: UnitOutcome,
) -> UnitOutcome:
    """One unit (or, with ``only``, the part of a unit that scores those categories) in a Ray
    worker; ``sources``: the result of its ``fit_from`` unit (Ray passes it once that unit
    finished)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from rich.console import Console

    from .trusted import allow_modules

    torch.set_num_threads(threads)
    allow_modules(allowed_modules)
    console = Console(force_terminal=False, soft_wrap=True)
    trained = any(source.trained for source in sources)
    return run_unit(cfg, data, seed, model, resume, console, keep_samples, trained, only)


def _submission_order(
    cfg: BenchmarkConfig, datasets: list[DatasetInfo]
) -> list[tuple[DatasetInfo, int, ModelSpec]]:
    """Every unit, those that fit a model first (of every dataset and seed), then those that load
    a fitted one. Ray starts ready tasks roughly in submission order, so the fits, which every
    dependent waits for, start as early as they can. (On quick.yaml with two workers it did not
    shorten the run: its longest unit, a DRAEM fit, still started late; results/parallel.md.)"""
    units = [(d, seed, m) for d in datasets for seed in cfg.seeds for m in cfg.models]
    return sorted(units, key=lambda unit: unit[2].fit_from is not None)


def _resources(spec: ModelSpec, threads: int, args: tuple, only: list[str] | None) -> dict:
    """Ray options of one task: its CPUs (= torch threads), a GPU if the model trains on one,
    retries after a worker death, and a name for Ray's dashboard and logs."""
    data, seed = args[1].name, args[2]
    name = f"{spec.name} · {data} · seed {seed}" + (f" · {only[0]}" if only else "")
    gpus = 1 if uses_gpu(spec) else 0
    return {"num_cpus": threads, "num_gpus": gpus, "max_retries": MAX_RETRIES, "name": name}


def _start_ray(ray: Any, options: ParallelOptions, threads: int, console: Any) -> bool:
    """Connect to the cluster or start a local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if options.ray_address:
        ray.init(address=options.ray_address, **quiet)
        console.log(f"Ray: joined the cluster at {options.ray_address}")
        return True
    cpus = options.workers * threads
    ray.init(num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES, **quiet)
    console.log(f"Ray: {options.workers} workers × {threads} threads on this machine")
    return True


def run_parallel(
    cfg: BenchmarkConfig,
    console: Any,
    prepared: dict[str, DatasetInfo] | None,
    resume: ResumeOptions,
    options: ParallelOptions,
) -> RunResult:
    """Run every model × dataset × seed as Ray tasks; the result as ``run_benchmark``'s."""
    from .models import check_model_spec
    from .trusted import allowed_modules

    ray = require_ray()
    t0 = time.perf_counter()
    for spec in cfg.models:
        check_model_spec(spec, cfg)
    with quiet_lightning():
        datasets, notes = prepare_datasets(cfg, console, prepared)
    threads = options.threads()
    started = _start_ray(ray, options, threads, console)
    try:
        task = ray.remote(_unit_task)
        # (dataset, seed, model) -> its task, or one task per category (a unit split by category)
        refs: dict[tuple[str, int, str], list[Any]] = {}
        split: set[tuple[str, int, str]] = set()
        for data, seed, spec in _submission_order(cfg, datasets):
            keep = seed == cfg.seeds[0] and data is datasets[0]
            sources = refs[(data.name, seed, spec.fit_from)] if spec.fit_from else []
            args = (cfg, data, seed, spec.name, resume, keep, allowed_modules(), threads)
            parts: list[list[str] | None] = [None]
            if splits_by_category(spec, data):
                parts = [[c] for c in data.categories]
                split.add((data.name, seed, spec.name))
            refs[(data.name, seed, spec.name)] = [
                task.options(**_resources(spec, threads, args, only)).remote(*args, only, *sources)
                for only in parts
            ]
        # the driver reads the outcomes back in the serial order (dataset, seed, model)
        serial = [
            (d.name, seed, m.name) for d in datasets for seed in cfg.seeds for m in cfg.models
        ]
        refs = {key: refs[key] for key in serial}
        outcomes = _collect(ray, refs, console)
    finally:
        if started:
            ray.shutdown()
    rows: list[dict[str, Any]] = []
    qualitative: Qualitative = {}
    by_name = {d.name: d for d in datasets}
    for (data, seed, model), parts in outcomes.items():
        if (data, seed, model) in split:
            outcome = finish_unit(cfg, by_name[data], seed, model, parts)
        else:
            outcome = parts[0]
        rows += outcome.rows
        if outcome.samples:
            qualitative[model] = outcome.samples
    if resume.enabled:
        notes.append(resume_note(cfg, sum(all(p.reused for p in o) for o in outcomes.values())))
        console.print(f"[yellow]note:[/] {notes[-1]}")
    return RunResult(rows, qualitative, notes, time.perf_counter() - t0)


def _collect(
    ray: Any, refs: dict[tuple[str, int, str], list[Any]], console: Any
) -> dict[tuple[str, int, str], list[UnitOutcome]]:
    """Every unit's outcomes (one, or one per category), in the order of ``refs``; a line as
    each task finishes."""
    names = {ref: key for key, parts in refs.items() for ref in parts}
    pending, finished = list(names), 0
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        finished += 1
        data, seed, model = names[done[0]]
        ray.get(done[0])  # a unit that failed raises here, with its worker's traceback
        console.log(f"[{finished}/{len(names)} tasks] {model} · {data} · seed {seed}: finished")
    return {key: ray.get(parts) for key, parts in refs.items()}
