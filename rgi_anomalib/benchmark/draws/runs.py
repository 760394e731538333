"""The rows of several runs of one config (one run directory per draw), and what their datasets
say on disk: the flag-every-pixel Dice of each draw's masks, byte-identical draws."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class ReportError(ValueError):
    """Run directories that cannot be reported; the message names the directory or draw."""


BASELINE_MODELS = ("patchcore", "draem", "rasl")  # the rows that do not use the generator


def draws_of(datasets: list[Any]) -> list[str]:
    """The names of a config's datasets (``DatasetSpec``) that are draws of one build: built
    (``build``) with the same settings but the seed. Fewer than two: []."""

    def settings(spec: Any) -> str:
        return json.dumps({k: v for k, v in spec.build.items() if k != "seed"}, sort_keys=True)

    built = [d for d in datasets if d.build is not None]
    if not built:
        return []
    groups: dict[str, list[str]] = defaultdict(list)
    for spec in built:
        groups[settings(spec)].append(spec.name)
    largest = max(groups.values(), key=len)
    return largest if len(largest) >= 2 else []


def load_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Rows of every run directory; one error naming a directory without results."""
    rows = []
    for run_dir in run_dirs:
        path = run_dir / "results.json"
        if not path.is_file():
            raise ReportError(f"{path} not found (run the benchmark there first)")
        rows += json.loads(path.read_text())["rows"]
    return rows


def _dataset_digest(run_dir: Path, dataset: str) -> str:
    """SHA-256 over a draw's test images and masks (paths and bytes), as written in ``run_dir``."""
    root = run_dir / "datasets" / dataset
    paths = sorted([*root.glob("test/*/*.png"), *root.glob("ground_truth/*/*.png")])
    if not paths:
        raise ReportError(f"no test images under {root}")
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def merge_baselines(
    rows: list[dict[str, Any]],
    run_dirs: list[Path],
    baseline_dirs: list[Path],
    models: tuple[str, ...] = BASELINE_MODELS,
) -> tuple[list[dict[str, Any]], list[str]]:
    """``rows`` plus the rows of ``baseline_dirs`` for (model, draw) pairs ``rows`` lacks, of the
    given ``models`` only (by default the generator-independent PatchCore, DRAEM and RASL: another
    config's GAN rows, e.g. its λ grid, were solved on another generator and must not mix in).
    A draw's rows are only taken when its test images and masks are byte-identical in both runs
    (same build seed, same bytes); otherwise one error names the draw. Returns the merged rows and
    the names of the models taken."""
    if not baseline_dirs:  # nothing to merge: the runs' datasets need not be on disk
        return rows, []
    here = {(r["model"], r["dataset"]) for r in rows}
    digests = {
        dataset: _dataset_digest(d, dataset)
        for d in run_dirs
        for dataset in {r["dataset"] for r in load_runs([d])}
    }
    taken: list[dict[str, Any]] = []
    for baseline_dir in baseline_dirs:
        checked: set[str] = set()  # hash each draw of a baseline run once, not once per row
        for row in load_runs([baseline_dir]):
            draw = row["dataset"]
            if row["model"] not in models or (row["model"], draw) in here or draw not in digests:
                continue
            if draw not in checked and _dataset_digest(baseline_dir, draw) != digests[draw]:
                raise ReportError(f"draw {draw} in {baseline_dir} differs from the run's")
            checked.add(draw)
            taken.append(row)
    return rows + taken, sorted({r["model"] for r in taken})


def flag_all_dice(mask_dir: Path, size: int) -> float:
    """Mean over masks of the Dice of predicting every pixel defective, 2a / (a + 1) for a mask
    covering a fraction a, at ``size`` px (nearest-neighbour resize: close to, not exactly, the
    harness's resize of the ground truth)."""
    paths = sorted(mask_dir.glob("*.png"))
    if not paths:
        raise ReportError(f"no masks in {mask_dir}")
    fractions = [
        (np.asarray(Image.open(p).convert("L").resize((size, size), Image.NEAREST)) > 127).mean()
        for p in paths
    ]
    return statistics.fmean(2 * a / (a + 1) for a in fractions)


def flag_all_row(run_dirs: list[Path], rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Category -> {draw: flag-every-pixel Dice}; draws whose masks are not on disk are left out."""
    size = rows[0]["image_size"]
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for run_dir in run_dirs:
        for dataset in sorted({r["dataset"] for r in rows}):
            truth = run_dir / "datasets" / dataset / "ground_truth"
            for category in sorted(p.name for p in truth.glob("*") if p.is_dir()):
                out[category][dataset] = flag_all_dice(truth / category, size)
    return out


def index(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(model, category) -> {draw (dataset name): row}."""
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        table[row["model"], row["category"]][row["dataset"]] = row
    return table
