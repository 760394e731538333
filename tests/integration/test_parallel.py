"""``rgi-anomalib benchmark --workers 2 --mlflow URI``: the units as Ray tasks (local Ray, two
workers) give the serial run's rows, and the report over the config's two draws; a later serial
``--resume`` reuses them; every unit is an MLflow run that the client reads back (SQLite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(sys.executable).parent / "rgi-anomalib"
# What differs between two runs of the same rows: the clock.
TIMES = ("fit_seconds", "test_seconds_per_image")

pytest.importorskip("ray", reason="the [scale] extra (make install installs it)")
pytest.importorskip("mlflow", reason="the [tracking] extra (make install installs it)")


def _config(tmp_path: Path) -> Path:
    """Two draws of a synthetic build × (RGI, and AnoGAN and R-RGI on RGI's generator): six
    units, four of them waiting for their source, R-RGI's split in two by category."""
    gan = {
        "training": {"max_epochs": 2, "sample_every_n_epochs": 0},
        "inversion": {"iterations": 4, "init_candidates": 4},
    }
    build = {"size": 32, "n_train": 16, "n_test_per_category": 2, "fill": "random"}
    config = {
        "run_dir": str(tmp_path / "unused"),
        "image_size": 32,
        "categories": ["crack", "scratch"],
        "train_batch_size": 8,
        "calibration_images": 2,
        "qualitative_images": 1,
        "datasets": [
            {"name": "draw0", "build": {**build, "seed": 0}},
            {"name": "draw1", "build": {**build, "seed": 1}},
        ],
        "models": [
            {"name": "rgi", "init_args": gan},
            {"name": "anogan", "fit_from": "rgi", "init_args": gan},
            # its own λ per category: scored as one task per category
            {
                "name": "rrgi",
                "fit_from": "rgi",
                "init_args": {**gan, "inversion": {**gan["inversion"], "finetune_iterations": 2}},
                "init_args_per_category": {"crack": {"lam": 0.1}, "scratch": {"lam": 0.2}},
            },
        ],
    }
    path = tmp_path / "tiny_parallel.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _benchmark(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(SCRIPT), "benchmark", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _rows(run_dir: Path) -> list[dict]:
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("parallel")
    config = _config(tmp)
    serial, parallel, store = tmp / "serial", tmp / "parallel", tmp / "mlflow.db"
    _benchmark("--config", str(config), "--run-dir", str(serial))
    proc = _benchmark(
        "--config", str(config), "--run-dir", str(parallel), "--workers", "2",
        "--threads-per-worker", "1", "--mlflow", str(store),
    )  # fmt: skip
    return {"config": config, "serial": serial, "parallel": parallel, "store": store,
            "log": proc.stdout}  # fmt: skip


@pytest.mark.slow
def test_parallel_rows_equal_the_serial_rows(runs: dict) -> None:
    assert "Ray: 2 workers × 1 threads on this machine" in runs["log"]
    # 2 draws × (RGI, AnoGAN, and R-RGI as one task per category): R-RGI's units were split, and
    # the driver finished them (done.json written, the parts' Engine folders gone)
    assert "[8/8 tasks]" in runs["log"]
    work = runs["parallel"] / "work" / "rrgi_draw1_seed0"
    assert (work / "done.json").is_file() and not (work / "parts").exists()
    serial, parallel = _rows(runs["serial"]), _rows(runs["parallel"])
    units = list(dict.fromkeys((r["model"], r["dataset"]) for r in parallel))
    assert units == [(m, d) for d in ("draw0", "draw1") for m in ("rgi", "anogan", "rrgi")]
    assert parallel == serial
    # AnoGAN loaded RGI's generator from the run directory: RGI's fit time is what it reports.
    rows = json.loads((runs["parallel"] / "results.json").read_text())["rows"]
    fit = {(r["model"], r["dataset"]): r["fit_seconds"] for r in rows}
    assert fit[("anogan", "draw0")] == fit[("rgi", "draw0")] != fit[("rgi", "draw1")]
    assert (runs["parallel"] / "qualitative.png").is_file()


@pytest.mark.slow
def test_a_config_with_draws_gets_the_report_over_them(runs: dict) -> None:
    report = (runs["parallel"] / "report.md").read_text()
    assert report.startswith("# Table 2 over draws: mean ± sd")
    assert "draw0, draw1" in report
    assert "report over the draws draw0, draw1 (mean ± sd)" in runs["log"]


@pytest.mark.slow
def test_a_serial_resume_reuses_every_unit_of_a_parallel_run(runs: dict) -> None:
    proc = _benchmark("--config", str(runs["config"]), "--run-dir", str(runs["parallel"]),
                      "--resume")  # fmt: skip
    assert "--resume: 6 of 6 model runs reused" in proc.stdout
    assert "fit  rgi" not in proc.stdout


@pytest.mark.slow
def test_every_unit_is_an_mlflow_run_with_its_params_metrics_and_artifacts(runs: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs['store']}")
    experiment = client.get_experiment_by_name("rgi-anomalib/tiny_parallel")
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in found) == [
        f"{m} · {d} · seed 0" for m in ("anogan", "rgi", "rrgi") for d in ("draw0", "draw1")
    ]
    run = next(r for r in found if r.info.run_name == "anogan · draw1 · seed 0")
    params, metrics = run.data.params, run.data.metrics
    assert params["fit_from"] == "rgi" and params["seed"] == "0" and params["form"] == "-"
    assert json.loads(params["dataset_source"])["build"]["seed"] == 1
    assert json.loads(params["init_args"])["inversion"]["iterations"] == 4
    row = next(
        r for r in json.loads((runs["parallel"] / "results.json").read_text())["rows"]
        if (r["model"], r["dataset"], r["category"]) == ("anogan", "draw1", "scratch")
    )  # fmt: skip
    for column in ("dice_oracle_mean", "dice_dataset_mean", "dice_label_free_mean",
                   "pixel_auroc", "image_auroc", "aupro", "gap_rmse", "fit_seconds"):  # fmt: skip
        assert metrics[f"scratch/{column}"] == pytest.approx(row[column])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.md", "dice_bar.png", "qualitative.png", "init_args.json"} <= artifacts
    # beside the database, not in ./mlruns of wherever the command ran
    beside = (runs["store"].parent / "mlflow-artifacts").resolve().as_uri()
    assert run.info.artifact_uri.startswith(beside + "/")
