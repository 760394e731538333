"""Progress when the output is not a terminal (CI, ``nohup ... > log``): plain lines as it goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(sys.executable).parent / "rgi-anomalib"


def test_plain_progress_bar_writes_a_line_per_epoch_and_per_batch(
    capsys: pytest.CaptureFixture,
) -> None:
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    from rgi_anomalib.engine import PlainProgressBar

    model = BoringModel()
    bar = PlainProgressBar("boring · d · seed 0")
    trainer = Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=0,
        limit_predict_batches=4,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model)
    trainer.predict(model, dataloaders=model.predict_dataloader())
    lines = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "fit boring · d · seed 0: epoch 1/3",
        "fit boring · d · seed 0: epoch 2/3",
        "fit boring · d · seed 0: epoch 3/3",
        *[f"predict boring · d · seed 0: batch {i}/4" for i in range(1, 5)],
    ]
    bar.disable()
    trainer.predict(model, dataloaders=model.predict_dataloader())
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_benchmark_output_to_a_file_shows_progress_lines(
    tmp_path: Path, folder_dataset_factory
) -> None:
    """The real command with stdout to a file (not a terminal): a line per epoch of the fit, per
    predict batch, and per step of the harness, before the results table."""
    root = folder_dataset_factory(tmp_path / "data", n_train=8, n_test=2, n_good=2)
    config = {
        "run_dir": str(tmp_path / "run"),
        "image_size": 32,
        "train_batch_size": 4,
        "calibration_images": 2,
        "datasets": [{"name": "tiny", "root": str(root)}],
        "models": [
            {
                "name": "rgi",
                "init_args": {
                    "training": {"max_epochs": 2, "sample_every_n_epochs": 0},
                    "inversion": {"iterations": 5, "init_candidates": 2},
                },
            }
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        proc = subprocess.run(
            [str(SCRIPT), "benchmark", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
            timeout=300,
            check=False,
        )
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    lines = text.splitlines()
    for expected in (
        "[0/3 steps] fit  rgi · tiny · seed 0",
        "fit rgi · tiny · seed 0: epoch 1/2",
        "fit rgi · tiny · seed 0: epoch 2/2",
        "predict rgi · tiny · seed 0: batch 1/1",
        "[1/3 steps] test rgi · tiny · seed 0",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, text[-3000:])
    first_table = next(i for i, line in enumerate(lines) if line.startswith("| method"))
    last_progress = max(i for i, line in enumerate(lines) if "rgi · tiny · seed 0:" in line)
    assert last_progress < first_table  # written as it went, not at the end
