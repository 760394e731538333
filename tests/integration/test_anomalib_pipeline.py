"""anomalib's own ``anomalib benchmark`` runs our models (anomalib_pipeline.yaml)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthetic_btad import build_dataset

REPO = Path(__file__).resolve().parents[2]
ANOMALIB = Path(sys.executable).parent / "anomalib"


@pytest.mark.slow
def test_anomalib_benchmark_pipeline_runs_rgi_and_anogan(tmp_path: Path) -> None:
    build_dataset(tmp_path / "data", size=32, n_train=16, n_test_per_category=4, fill="random")
    config = yaml.safe_load((REPO / "configs/benchmark/anomalib_pipeline.yaml").read_text())
    bench = config["benchmark"]
    init_args = bench["model"]["init_args"]
    init_args["training"]["max_epochs"] = 1
    init_args["inversion"] = {"iterations": 5, "init_candidates": 8}
    bench["data"]["init_args"]["root"] = str(tmp_path / "data")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [str(ANOMALIB), "benchmark", "--config", str(path)],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (results,) = (tmp_path / "runs" / "benchmark").glob("*/results.csv")
    with results.open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["model.class_path"] for r in rows) == ["AnoGan", "Rgi"]
    # Runs are not bit-identical (measured 0.99971-1.0 for Rgi) and a float32 AUROC near 1 can
    # round above it; this failed once in CI without saying the value, so say it.
    values = [(r["model.class_path"], r["pixel_AUROC"]) for r in rows]
    assert all(0.0 <= float(v) <= 1.0 + 1e-6 for _, v in values), values
