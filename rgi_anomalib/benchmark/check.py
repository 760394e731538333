"""CI guard: compare a run's Dice values with a committed baseline.

The guarded unit is a method's mean over the defect categories (category ``"mean"``): GAN
training is reproducible on one machine but not across CPUs (other floating-point kernels give
another generator), and a per-category value of a few images moves with it. Per-category values
are kept in the baseline as information (``guarded: false``): printed, never failing.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError

DEFAULT_METRIC = "dice_oracle_mean"
# Dice is what the guard is for; pixel AUROC is far steadier across CPUs and GAN seeds (its
# spread is a sixth of Dice's for AnoGAN), so it catches a broken solve that Dice's tolerance
# lets through (measured: AnoGAN with no solve at all, docs/results/ci_guard.md).
DEFAULT_METRICS = (DEFAULT_METRIC, "pixel_auroc")
MIN_TOLERANCE = 0.02
SPREAD_FACTOR = 3.0
MEAN_CATEGORY = "mean"  # the category name of a method's mean over its categories

Key = tuple[str, str, str]


def values_by_key(rows: Sequence[dict[str, Any]], metric: str) -> dict[Key, float]:
    """``(model, dataset, category) -> value`` averaged over seeds, plus each model and
    dataset's mean over its categories under category ``"mean"``."""
    groups: dict[Key, list[float]] = defaultdict(list)
    for row in rows:
        value = row.get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        groups[(row["model"], row["dataset"], row["category"])].append(float(value))
    values = {k: sum(v) / len(v) for k, v in groups.items()}
    per_method: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (model, dataset, _), value in values.items():
        per_method[(model, dataset)].append(value)
    for (model, dataset), vals in per_method.items():
        values[(model, dataset, MEAN_CATEGORY)] = sum(vals) / len(vals)
    return values


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results.json (or of a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        msg = f"{path} not found: expected a benchmark run directory holding results.json"
        raise ConfigError(msg)
    return json.loads(path.read_text())["rows"]


def _entry(key: Key, values: list[float], metric: str, guarded: bool, **rule: float) -> dict:
    mean = statistics.fmean(values)
    spread = max(values) - min(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    # Every recorded variant must pass its own baseline, hence the mean - min term next to 3 sigma.
    tolerance = max(rule["min_tolerance"], rule["spread_factor"] * std, mean - min(values))
    return {
        "model": key[0],
        "dataset": key[1],
        "category": key[2],
        "metric": metric,
        "guarded": guarded,
        "value": round(mean, 4),
        "runs": [round(v, 4) for v in values],
        "spread": round(spread, 4),
        "std": round(std, 4),
        "tolerance": round(tolerance, 4),
    }


def make_baseline(
    runs: Sequence[Sequence[dict[str, Any]]],
    *,
    labels: Sequence[str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    min_tolerance: float = MIN_TOLERANCE,
    spread_factor: float = SPREAD_FACTOR,
    config: str = "",
    command: str = "",
) -> dict[str, Any]:
    """A baseline from variant runs of one config (repeats, CPU kernel settings, GAN seeds).

    Per metric and key: value = mean over the variants, spread = max − min, std = sample standard
    deviation, tolerance = max(min_tolerance, spread_factor × std, mean − min). Category means
    are guarded, single categories are recorded for information.
    """
    if not runs:
        raise ConfigError("make_baseline needs at least one run")
    labels = list(labels) if labels is not None else [f"run {i}" for i in range(len(runs))]
    if len(labels) != len(runs):
        raise ConfigError(f"{len(labels)} labels for {len(runs)} runs")
    rule = {"min_tolerance": min_tolerance, "spread_factor": spread_factor}
    entries = []
    for metric in metrics:
        per_run = [values_by_key(rows, metric) for rows in runs]
        keys = sorted(set.intersection(*(set(r) for r in per_run)))
        entries += [
            _entry(k, [r[k] for r in per_run], metric, k[2] == MEAN_CATEGORY, **rule) for k in keys
        ]
    order = {m: i for i, m in enumerate(metrics)}
    entries.sort(
        key=lambda e: (
            not e["guarded"],
            order[e["metric"]],
            e["model"],
            e["dataset"],
            e["category"],
        )
    )
    guarded = [e for e in entries if e["guarded"]]
    return {
        "config": config,
        "command": command,
        "metrics": list(metrics),
        "n_runs": len(runs),
        "variants": labels,
        "max_spread": max((e["spread"] for e in guarded), default=0.0),
        "rule": f"guarded: each method's mean over categories; fail when value < baseline - "
        f"tolerance; tolerance = max({min_tolerance}, {spread_factor} x std, mean - min) over "
        "the variants",
        "entries": entries,
    }


def check(rows: Sequence[dict[str, Any]], baseline: dict[str, Any]) -> tuple[bool, str]:
    """Return (passed, readable report). A guarded entry fails when it is missing from the run
    or dropped below ``value - tolerance``; improvements always pass; unguarded entries only
    print."""
    lines = []
    ok = True
    n_guarded = n_fail = 0
    cache: dict[str, dict[Key, float]] = {}
    header = f"{'model':<12} {'dataset':<14} {'category':<12} {'metric':<18} "
    header += f"{'baseline':>8} {'tol':>6} {'run':>8} {'delta':>8}  status"
    lines.append(header)
    for entry in baseline.get("entries", []):
        metric = entry.get("metric", baseline.get("metric", DEFAULT_METRIC))
        guarded = entry.get("guarded", True)
        values = cache.setdefault(metric, values_by_key(rows, metric))
        key = (entry["model"], entry["dataset"], entry["category"])
        base, tol = float(entry["value"]), float(entry.get("tolerance", MIN_TOLERANCE))
        got = values.get(key)
        prefix = f"{key[0]:<12} {key[1]:<14} {key[2]:<12} {metric:<18} {base:8.3f} {tol:6.3f} "
        n_guarded += guarded
        if got is None:
            if guarded:
                ok, n_fail = False, n_fail + 1
            status = "FAIL (not in this run)" if guarded else "info (not in this run)"
            lines.append(prefix + f"{'missing':>8} {'':>8}  {status}")
            continue
        delta = got - base
        status = "ok" if guarded else "info"
        if guarded and delta < -tol:
            ok, n_fail = False, n_fail + 1
            status = f"FAIL (dropped {-delta:.3f} > tolerance {tol:.3f})"
        lines.append(prefix + f"{got:8.3f} {delta:+8.3f}  {status}")
    lines.append(
        f"check: {n_guarded - n_fail}/{n_guarded} guarded values within tolerance"
        + ("" if ok else f", {n_fail} FAILED")
    )
    return ok, "\n".join(lines)
