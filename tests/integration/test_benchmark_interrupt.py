"""Ctrl-C on ``rgi-anomalib benchmark``: what was kept, the --resume command, exit 130."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rgi_anomalib.benchmark.cli import main, resume_command

SCRIPT = Path(sys.executable).parent / "rgi-anomalib"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config", "c.yaml"], "--config c.yaml --run-dir /r --resume"),
        (["--config", "c.yaml", "--overwrite"], "--config c.yaml --run-dir /r --resume"),
        (
            ["--config=c.yaml", "--run-dir", "old", "--overw"],
            "--config=c.yaml --run-dir /r --resume",
        ),
        (
            ["--run-dir=old", "--config", "my c.yaml", "--models", "rgi", "--resume"],
            "--config 'my c.yaml' --models rgi --run-dir /r --resume",
        ),
    ],
)
def test_resume_command(argv: list[str], expected: str) -> None:
    assert resume_command(argv, Path("/r")) == "rgi-anomalib benchmark " + expected


def _config(tmp_path: Path, root: Path) -> Path:
    config = {
        "run_dir": str(tmp_path / "run"),
        "image_size": 32,
        "calibration_images": 2,
        "datasets": [{"name": "tiny", "root": str(root)}],
        "models": [
            {"name": "rgi", "init_args": {"training": {"max_epochs": 1}}},
            {"name": "anogan", "fit_from": "rgi"},
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _interrupt_after(records: str, lightning: bool):
    """A run_benchmark that writes ``records`` ("none", "done", "both") as a run stopped there
    would, then stops like Ctrl-C: a KeyboardInterrupt, or (``lightning``) the sys.exit(1)
    Lightning makes of one while it fits."""
    from rgi_anomalib.benchmark.resume import unit_keys
    from rgi_anomalib.benchmark.unit_store import save_category, save_done

    def run(cfg, console=None, prepared=None, resume=None):
        keys = unit_keys(cfg, cfg.datasets[0], 0)
        work = cfg.run_dir / "work"
        if records in ("done", "both"):
            (work / "rgi_tiny_seed0").mkdir(parents=True)
            save_done(work / "rgi_tiny_seed0", keys["rgi"], [{"category": "defect"}], None)
        if records == "both":
            (work / "anogan_tiny_seed0").mkdir(parents=True)
            save_category(work / "anogan_tiny_seed0", keys["anogan"], "defect", {}, None)
            # a record of other settings (another config) is not reported as kept
            save_category(work / "anogan_tiny_seed0", "0" * 64, "other", {}, None)
        if not lightning:
            raise KeyboardInterrupt
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)

    return run


@pytest.mark.parametrize(
    ("records", "lightning", "kept"),
    [
        ("none", False, []),
        ("done", True, ["rgi · tiny · seed 0: finished (1 categories scored)"]),
        (
            "both",
            False,
            [
                "rgi · tiny · seed 0: finished (1 categories scored)",
                "anogan · tiny · seed 0: categories defect scored kept, the rest runs again",
            ],
        ),
    ],
)
def test_ctrl_c_says_what_was_kept_and_how_to_go_on(
    records: str,
    lightning: bool,
    kept: list[str],
    tmp_path: Path,
    folder_dataset_factory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    import rgi_anomalib.benchmark.runner as runner

    root = folder_dataset_factory(tmp_path / "data", n_train=6, n_test=2, n_good=1)
    config = _config(tmp_path, root)
    monkeypatch.setattr(runner, "run_benchmark", _interrupt_after(records, lightning))
    assert main(["--config", str(config), "--overwrite"]) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "rgi-anomalib benchmark: interrupted."
    run = tmp_path / "run"
    if kept:
        assert err[1] == f"Kept in {run} (a --resume reuses it):"
        assert err[2:-2] == [f"  {line}" for line in kept]
    else:
        assert err[1].startswith(f"No model finished a fit or a category yet in {run}")
    assert err[-2:] == [
        "Go on with:",
        f"  rgi-anomalib benchmark --config {config} --run-dir {run} --resume",
    ]
    assert (run / ".rgi-benchmark-run").is_file()  # kept for --resume


@pytest.mark.slow
def test_sigint_on_the_real_command(tmp_path: Path) -> None:
    """SIGINT while the second model trains (inside Lightning): exit 130, the first model's
    unit reported kept; the printed command goes on with the same run directory."""
    run_dir = tmp_path / "run"
    config = {
        "run_dir": str(run_dir),
        "image_size": 32,
        "categories": ["crack"],
        "train_batch_size": 16,
        "calibration_images": 2,
        "datasets": [
            {"name": "tiny", "build": {"size": 32, "n_train": 10, "n_test_per_category": 2}}
        ],
        "models": [
            {
                "name": "rgi",
                "init_args": {
                    "training": {"max_epochs": 1, "sample_every_n_epochs": 0},
                    "inversion": {"iterations": 5, "init_candidates": 8},
                },
            },
            {  # long enough to be interrupted while it trains
                "name": "anogan",
                "init_args": {"training": {"max_epochs": 500, "sample_every_n_epochs": 0}},
            },
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [str(SCRIPT), "benchmark", "--config", str(path)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    done = run_dir / "work" / "rgi_tiny_seed0" / "done.json"
    deadline = time.monotonic() + 180
    while not done.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # anogan is training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "rgi · tiny · seed 0: finished (1 categories scored)" in err
    go_on = f"rgi-anomalib benchmark --config {path} --run-dir {run_dir} --resume"
    assert f"Go on with:\n  {go_on}\n" in err
    # the printed command goes on (here for rgi only: its unit is reused, nothing trains)
    args = shlex.split(go_on)[2:]
    resumed = subprocess.run(
        [str(SCRIPT), "benchmark", *args, "--models", "rgi"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "160"},
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "--resume: 1 of 1 model runs reused" in resumed.stdout
