"""GAN training and batched inversion under Lightning DDP (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "helpers" / "ddp_run.py"


def run(*args: object) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, env=env,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_ddp_training_and_inversion_match_one_process(tiny_folder: Path, tmp_path: Path) -> None:
    run("train", tiny_folder, tmp_path, 2)
    assert (tmp_path / "ddp.ckpt").is_file()
    run("test", tiny_folder, tmp_path, 1)
    run("test", tiny_folder, tmp_path, 2)
    one = json.loads((tmp_path / "metrics_1.json").read_text())
    two = json.loads((tmp_path / "metrics_2.json").read_text())
    assert one.keys() == two.keys()
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
