"""``--workers``, ``--threads-per-worker``, ``--ray-address`` and ``--mlflow`` of
``rgi-anomalib benchmark``: errors before anything runs, the serial path without Ray or MLflow,
the draws of a config, and the MLflow run of a unit (a folder store, no training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rgi_anomalib.benchmark.cli import main
from rgi_anomalib.benchmark.config import BenchmarkConfig, ConfigError, DatasetSpec

CONFIG = str(Path(__file__).resolve().parents[4] / "configs/benchmark/quick.yaml")


def test_workers_without_ray_is_one_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    run_dir = tmp_path / "run"
    assert main(["--config", CONFIG, "--run-dir", str(run_dir), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'rgi-anomalib[scale]'" in err[0]
    assert not run_dir.exists()  # refused before the run directory was made


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads-per-worker", "2"], "--threads-per-worker and --ray-address need --workers"),
        (["--ray-address", "auto"], "--threads-per-worker and --ray-address need --workers"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--workers", "2", "--threads-per-worker", "0"], "--threads-per-worker must be >= 1"),
    ],
)
def test_scale_options_are_checked_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    run_dir = tmp_path / "run"
    assert main(["--config", CONFIG, "--run-dir", str(run_dir), *args]) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_mlflow_without_mlflow_is_one_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rgi_anomalib.benchmark.tracking import MlflowTracking

    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ConfigError, match=r"pip install 'rgi-anomalib\[tracking\]'"):
        MlflowTracking.open("runs/mlflow.db")


def test_the_serial_benchmark_imports_neither_ray_nor_mlflow() -> None:
    code = (
        "import sys\n"
        "import rgi_anomalib.benchmark.cli, rgi_anomalib.benchmark.runner\n"
        "import rgi_anomalib.benchmark.report\n"
        "print(sorted(m for m in ('ray', 'mlflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_line_starts_without_torch() -> None:
    """Its errors and --help come before any heavy import (anomalib takes seconds)."""
    code = "import sys, rgi_anomalib.benchmark.cli\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_draws_are_the_datasets_built_alike_but_for_the_seed() -> None:
    from rgi_anomalib.benchmark.draws.runs import draws_of

    build = {"bases": "elpv", "size": 64}
    specs = [
        DatasetSpec("s0", build={**build, "seed": 0}),
        DatasetSpec("s1", build={**build, "seed": 1}),
        DatasetSpec("big", build={**build, "size": 128, "seed": 0}),
        DatasetSpec("folder", root=Path("x")),
    ]
    assert draws_of(specs) == ["s0", "s1"]
    assert draws_of(specs[2:]) == [] and draws_of(specs[:1]) == []


def test_a_unit_is_one_mlflow_run_in_a_folder_store(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="the [tracking] extra")
    from mlflow.tracking import MlflowClient

    from rgi_anomalib.benchmark.tracking import MlflowTracking

    (tmp_path / "results.md").write_text("# results\n")
    raw = {"datasets": [{"name": "d", "build": {"size": 32, "seed": 3}}]}
    cfg = BenchmarkConfig(
        run_dir=tmp_path, datasets=[], models=[], raw=raw, source="configs/benchmark/x.yaml"
    )
    common = {"model": "rrgi", "model_class": "RRgi", "form": "", "dataset": "d", "seed": 0,
              "image_size": 32, "fit_from": "rgi", "pixel_metrics": True}  # fmt: skip
    rows = [
        {**common, "category": "crack", "dice_oracle_mean": 0.25, "gap_rmse": float("nan"),
         "init_args": json.dumps({"inversion": {"lam": 0.12}})},
        {**common, "category": "scratch", "dice_oracle_mean": 0.5, "gap_rmse": 0.1,
         "init_args": json.dumps({"inversion": {"lam": 0.14}})},
    ]  # fmt: skip
    tracking = MlflowTracking.open(str(tmp_path / "mlruns"))
    assert tracking.uri.startswith("file:")
    (run_id,) = tracking.log_run(cfg, rows)
    run = MlflowClient(tracking_uri=tracking.uri).get_run(run_id)
    assert run.info.run_name == "rrgi · d · seed 0" and run.info.status == "FINISHED"
    assert run.data.metrics == {
        "crack/dice_oracle_mean": 0.25,
        "scratch/dice_oracle_mean": 0.5,
        "scratch/gap_rmse": 0.1,
    }  # NaN (not measured) is not logged; seed and size are parameters
    params = run.data.params
    assert json.loads(params["init_args/scratch"]) == {"inversion": {"lam": 0.14}}
    assert json.loads(params["dataset_source"]) == {"build": {"seed": 3, "size": 32}}
    assert params["config"] == "configs/benchmark/x.yaml" and params["fit_from"] == "rgi"


def test_a_unit_asks_ray_for_a_gpu_only_when_its_model_trains_on_one() -> None:
    from rgi_anomalib.benchmark.config import ModelSpec
    from rgi_anomalib.benchmark.parallel import _resources

    args = (None, DatasetSpec("d", root=Path("x")), 0)
    on_gpu = ModelSpec("rgi", "rgi", trainer_args={"accelerator": "gpu"})
    assert _resources(on_gpu, 4, args, None) == {
        "num_cpus": 4, "num_gpus": 1, "max_retries": 2, "name": "rgi · d · seed 0"
    }  # fmt: skip
    assert _resources(ModelSpec("rgi", "rgi"), 1, args, ["crack"])["num_gpus"] == 0
    assert _resources(ModelSpec("rgi", "rgi"), 1, args, ["crack"])["name"].endswith("· crack")
