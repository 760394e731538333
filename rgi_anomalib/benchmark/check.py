"""CI guard: compare a run's Dice values with a committed baseline (per method × category)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError

DEFAULT_METRIC = "dice_oracle_mean"
MIN_TOLERANCE = 0.02
SPREAD_FACTOR = 3.0


def _mean_by_key(rows: Sequence[dict[str, Any]], metric: str) -> dict[tuple[str, str, str], float]:
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        value = row.get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        groups[(row["model"], row["dataset"], row["category"])].append(float(value))
    return {k: sum(v) / len(v) for k, v in groups.items()}


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results.json (or of a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        msg = f"{path} not found: expected a benchmark run directory holding results.json"
        raise ConfigError(msg)
    return json.loads(path.read_text())["rows"]


def make_baseline(
    runs: Sequence[Sequence[dict[str, Any]]],
    *,
    metric: str = DEFAULT_METRIC,
    min_tolerance: float = MIN_TOLERANCE,
    spread_factor: float = SPREAD_FACTOR,
    config: str = "",
) -> dict[str, Any]:
    """A baseline from repeated runs of one config: value = the lowest run's value, spread =
    max − min over runs, tolerance = max(min_tolerance, spread_factor × spread)."""
    per_run = [_mean_by_key(rows, metric) for rows in runs]
    keys = sorted(set.intersection(*(set(r) for r in per_run)))
    entries = []
    for model, dataset, category in keys:
        values = [r[(model, dataset, category)] for r in per_run]
        spread = max(values) - min(values)
        entries.append(
            {
                "model": model,
                "dataset": dataset,
                "category": category,
                "metric": metric,
                "value": round(min(values), 4),
                "runs": [round(v, 4) for v in values],
                "spread": round(spread, 4),
                "tolerance": round(max(min_tolerance, spread_factor * spread), 4),
            }
        )
    return {
        "config": config,
        "metric": metric,
        "n_runs": len(runs),
        "max_spread": max((e["spread"] for e in entries), default=0.0),
        "rule": f"fail when value < baseline - tolerance; tolerance = max({min_tolerance}, "
        f"{spread_factor} x run-to-run spread)",
        "entries": entries,
    }


def check(rows: Sequence[dict[str, Any]], baseline: dict[str, Any]) -> tuple[bool, str]:
    """Return (passed, readable report). A guarded entry fails when it is missing from the run
    or dropped below ``value - tolerance``; improvements always pass."""
    lines = []
    ok = True
    cache: dict[str, dict[tuple[str, str, str], float]] = {}
    header = f"{'model':<12} {'dataset':<12} {'category':<12} {'metric':<18} "
    header += f"{'baseline':>8} {'tol':>6} {'run':>8} {'delta':>8}  status"
    lines.append(header)
    for entry in baseline.get("entries", []):
        metric = entry.get("metric", baseline.get("metric", DEFAULT_METRIC))
        values = cache.setdefault(metric, _mean_by_key(rows, metric))
        key = (entry["model"], entry["dataset"], entry["category"])
        base, tol = float(entry["value"]), float(entry.get("tolerance", MIN_TOLERANCE))
        got = values.get(key)
        prefix = f"{key[0]:<12} {key[1]:<12} {key[2]:<12} {metric:<18} {base:8.3f} {tol:6.3f} "
        if got is None:
            ok = False
            lines.append(prefix + f"{'missing':>8} {'':>8}  FAIL (not in this run)")
            continue
        delta = got - base
        status = "ok"
        if delta < -tol:
            ok = False
            status = f"FAIL (dropped {-delta:.3f} > tolerance {tol:.3f})"
        lines.append(prefix + f"{got:8.3f} {delta:+8.3f}  {status}")
    n = len(baseline.get("entries", []))
    n_fail = sum("FAIL" in line for line in lines[1:])
    lines.append(
        f"check: {n - n_fail}/{n} guarded values within tolerance"
        + ("" if ok else f", {n_fail} FAILED")
    )
    return ok, "\n".join(lines)
