"""What the command line changes in a benchmark config (``--run-dir``, ``--seeds``,
``--datasets``, ``--models``, ``--keep-checkpoints``, ``--resume``): applied to a copy of the
frozen ``BenchmarkConfig``, never written into it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BenchmarkConfig, ConfigError, parse_seeds
from .resume import ResumeOptions


@dataclass(frozen=True)
class Overrides:
    run_dir: Path | None = None
    seeds: Sequence[int] | None = None
    datasets: Sequence[str] | None = None  # run only these datasets of the config
    models: Sequence[str] | None = None  # run only these models (with their fit_from sources)
    keep_checkpoints: bool = False
    resume: bool = False

    def apply(self, cfg: BenchmarkConfig) -> tuple[BenchmarkConfig, ResumeOptions]:
        """The config to run, and what it may reuse from an earlier run."""
        keep = cfg.keep_checkpoints or self.keep_checkpoints
        changes: dict[str, Any] = {"keep_checkpoints": keep}
        if self.run_dir:
            changes["run_dir"] = Path(self.run_dir)
        if self.seeds:
            changes["seeds"] = parse_seeds(list(self.seeds), "--seeds")
        if self.datasets:
            changes["datasets"] = select_datasets(cfg.datasets, self.datasets)
        if self.models:
            changes["models"] = select_models(cfg.models, self.models)
        # fit_from sources of the whole config: a --models run keeps their weights for a later
        # --resume that runs the models which load them
        sources = frozenset(m.fit_from for m in cfg.models if m.fit_from)
        return dataclasses.replace(cfg, **changes), ResumeOptions(self.resume, sources)


def _select(entries: list[Any], names: Sequence[str], flag: str) -> list[Any]:
    """The config's entries named in ``names`` (config order); one error names unknown ones."""
    known = [e.name for e in entries]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{flag} {' '.join(unknown)}: not in the config (it has {known})")
    return [e for e in entries if e.name in names]


def select_datasets(datasets: list[Any], names: Sequence[str]) -> list[Any]:
    return _select(datasets, names, "--datasets")


def select_models(models: list[Any], names: Sequence[str]) -> list[Any]:
    chosen = _select(models, names, "--models")
    for spec in chosen:
        if spec.fit_from is not None and spec.fit_from not in names:
            raise ConfigError(
                f"--models: {spec.name!r} loads the weights of {spec.fit_from!r} (fit_from); "
                f"add {spec.fit_from!r} to --models"
            )
    return chosen
