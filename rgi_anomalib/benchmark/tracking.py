"""``--mlflow URI``: every unit of a finished run (one model on one dataset and seed) as an
MLflow run, where anomalib users already look at experiments (anomalib ships an MLflow logger).

One MLflow experiment per config (``rgi-anomalib/<config file stem>``); in it one run per unit,
named ``model · dataset · seed k``, with

- parameters: the model (name, class, form, ``fit_from``), its init args (the whole JSON also
  as the artifact ``init_args.json``: MLflow cuts parameters at 6000 characters), the dataset
  (name and source: its ``build`` section or its root) and the seed, image size, config path;
- metrics ``<category>/<column>``: every number of the unit's rows (the three Dice, pixel and
  image AUROC, AUPRO, the reconstruction gap and restoration columns, fit and test times);
- artifacts: the run's ``results.md``, ``dice_bar.png`` and ``qualitative.png``.

Logged after the run's tables are written, from its rows, so a parallel and a serial run log
the same. The store needs nothing running: an SQLite file (``sqlite:///runs/mlflow.db``, or a
path ending in ``.db``) or a folder (``file:``, any other path; MLflow 3 keeps that one in
maintenance mode). ``mlflow ui --backend-store-uri URI`` shows them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BenchmarkConfig, ConfigError

EXTRA = "tracking"
ARTIFACTS = ("results.md", "dice_bar.png", "qualitative.png")
PARAM_LIMIT = 6000  # characters MLflow keeps of a parameter value
# Row fields that name the unit or its category rather than measure it.
_NOT_METRICS = frozenset({"seed", "image_size", "pixel_metrics"})


def tracking_uri(uri: str) -> str:
    """A store URI MLflow accepts: URIs pass through; a plain path ending in ``.db`` becomes an
    SQLite store (MLflow's recommended local store), any other plain path a folder store."""
    if "://" in uri or uri.startswith("file:"):
        return uri
    path = Path(uri).expanduser().resolve()
    return f"sqlite:///{path}" if path.suffix == ".db" else path.as_uri()


def artifact_root(uri: str) -> str | None:
    """Where an SQLite store's artifacts go: a folder beside the database file (MLflow's
    default, ``./mlruns`` in whatever directory the command ran from, would scatter them). A
    folder store keeps them inside itself (None: MLflow's default)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    database = Path(uri[len(prefix) :])
    return (database.parent / f"{database.stem}-artifacts").resolve().as_uri()


def _allow_file_store(uri: str) -> None:
    """MLflow 3 keeps its folder store in maintenance mode and refuses it unless told: the user
    named one, so it is what they get (SQLite is the way to MLflow's newer features)."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


@dataclass
class MlflowTracking:
    """Logs the units of a finished run into one MLflow tracking store."""

    uri: str
    client: Any

    @classmethod
    def open(cls, uri: str) -> MlflowTracking:
        """The store at ``uri`` (checked before anything runs), or one clear error."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(
                f"--mlflow needs MLflow: pip install 'rgi-anomalib[{EXTRA}]' "
                "(`make install` installs it)"
            ) from None
        resolved = tracking_uri(uri)
        _allow_file_store(resolved)
        try:
            client = MlflowClient(tracking_uri=resolved)
            client.search_experiments(max_results=1)
        except Exception as exc:  # MLflow raises many types for a bad store
            raise ConfigError(f"--mlflow {uri}: not a usable MLflow store ({exc})") from None
        return cls(resolved, client)

    def experiment(self, cfg: BenchmarkConfig) -> str:
        """The id of the config's experiment (created on first use)."""
        stem = Path(str(cfg.source)).stem if cfg.source else "benchmark"
        name = f"rgi-anomalib/{stem}"
        found = self.client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=artifact_root(self.uri))

    def log_run(self, cfg: BenchmarkConfig, rows: list[dict[str, Any]]) -> list[str]:
        """One MLflow run per unit of ``rows`` (the run's results); their ids."""
        experiment = self.experiment(cfg)
        return [self._log_unit(experiment, cfg, unit_rows) for unit_rows in _by_unit(rows).values()]

    def _log_unit(self, experiment: str, cfg: BenchmarkConfig, rows: list[dict[str, Any]]) -> str:
        from mlflow.entities import Metric, Param

        first = rows[0]
        name = f"{first['model']} · {first['dataset']} · seed {first['seed']}"
        tags = {"run_dir": str(cfg.run_dir), "config": str(cfg.source or "")}
        run = self.client.create_run(experiment, run_name=name, tags=tags)
        run_id = run.info.run_id
        params = [Param(k, _param(v)) for k, v in unit_params(cfg, rows).items()]
        stamp = 0
        metrics = [Metric(k, v, stamp, 0) for k, v in unit_metrics(rows).items()]
        self.client.log_batch(run_id, metrics=metrics, params=params)
        with tempfile.TemporaryDirectory() as tmp:
            init_args = Path(tmp) / "init_args.json"
            by_category = {row["category"]: json.loads(row["init_args"] or "{}") for row in rows}
            init_args.write_text(json.dumps(by_category, indent=2, sort_keys=True) + "\n")
            self.client.log_artifact(run_id, str(init_args))
        for artifact in _existing(cfg.run_dir, ARTIFACTS):
            self.client.log_artifact(run_id, str(artifact))
        self.client.set_terminated(run_id)
        return run_id


def _by_unit(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    units: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        units.setdefault((row["model"], row["dataset"], row["seed"]), []).append(row)
    return units


def unit_params(cfg: BenchmarkConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of one unit: model, its init args, dataset source and build, seed."""
    first = rows[0]
    dataset = next((d for d in cfg.raw.get("datasets", []) if d["name"] == first["dataset"]), {})
    source = {k: v for k, v in dataset.items() if k != "name"}
    init_args = {row["init_args"] for row in rows}
    params = {
        "model": first["model"],
        "model_class": first["model_class"],
        "form": first["form"] or "-",
        "fit_from": first["fit_from"] or "-",
        "dataset": first["dataset"],
        "dataset_source": json.dumps(source, sort_keys=True, default=str),
        "seed": first["seed"],
        "image_size": first["image_size"],
        "config": str(cfg.source or ""),
    }
    if len(init_args) == 1:
        params["init_args"] = first["init_args"]
    else:  # per-category settings: one parameter per category
        params.update({f"init_args/{row['category']}": row["init_args"] for row in rows})
    return params


def unit_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """``<category>/<column>`` for every finite number of the unit's rows."""
    metrics = {}
    for row in rows:
        for key, value in row.items():
            if key in _NOT_METRICS or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                metrics[f"{row['category']}/{key}"] = float(value)
    return metrics


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - 1] + "…"


def _existing(run_dir: Path, names: Iterable[str]) -> list[Path]:
    return [run_dir / name for name in names if (run_dir / name).is_file()]
