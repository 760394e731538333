"""Start-up noise (issue 32): the lines our package causes are silenced by message; anomalib's and
Lightning's own lines (FutureWarnings at import, the OpenVINO notice, the litlogger tip, ...)
are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from model_helpers import FAST_RGI, nested

from rgi_anomalib.models import Rgi

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
EVAL_MODE = "module(s) in eval mode at the start of training"


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=ENV, timeout=600
    )


def eval_mode_warning(count: int) -> str:
    """Lightning's message (lightning/pytorch/loops/fit_loop.py)."""
    return (
        f"Found {count} module(s) in eval mode at the start of training. This may lead to "
        "unexpected behavior during training. If this is intentional, you can ignore this warning."
    )


def warnings_shown_after_fit_start(model: Rgi, counts: list[int]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model._expect_eval_mode_warning()
        for count in counts:
            warnings.warn(eval_mode_warning(count), UserWarning, stacklevel=1)
    return [str(w.message) for w in caught]


def test_eval_mode_warning_silenced_only_for_the_ema_generator() -> None:
    model = Rgi(**nested(**FAST_RGI))
    ema = sum(1 for _ in model.model.generator_ema.modules())
    # Exactly the EMA generator's modules: silenced; any other count still shows.
    assert warnings_shown_after_fit_start(model, [ema, ema + 1]) == [eval_mode_warning(ema + 1)]
    # Another module left in eval mode by mistake: the warning stays.
    model.model.discriminator.eval()
    count = ema + sum(1 for _ in model.model.discriminator.modules())
    assert warnings_shown_after_fit_start(model, [count]) == [eval_mode_warning(count)]


@pytest.mark.slow
def test_rgi_anomalib_help_prints_nothing_on_stderr() -> None:
    result = run(BIN / "rgi-anomalib", "train", "--model", "rgi", "--help")
    assert result.returncode == 0
    assert result.stderr == ""


@pytest.mark.slow
def test_anomalib_train_prints_no_warning_of_ours(tiny_folder: Path, tmp_path: Path) -> None:
    """The plain ``anomalib`` command (no warning filters of ours at start-up)."""
    result = run(
        BIN / "anomalib", "train", "--model", "rgi", "--model.image_size", "32",
        "--model.training.max_epochs", "1", "--model.inversion.iterations", "5",
        "--model.inversion.mask_update", "closed_form",
        "--model.inversion.init_candidates", "16", "--model.visualizer", "false",
        "--data", "anomalib.data.Folder", "--data.name", "tiny", "--data.root", tiny_folder,
        "--data.normal_dir", "train/good", "--data.abnormal_dir", "test/defect",
        "--data.mask_dir", "ground_truth/defect", "--data.normal_test_dir", "test/good",
        "--data.num_workers", "0", "--default_root_dir", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pixel_AUROC" in result.stdout  # it ran to the end
    assert EVAL_MODE not in result.stderr + result.stdout
    ours = [line for line in result.stderr.splitlines() if "/rgi_anomalib/" in line]
    assert ours == [], ours
    # anomalib's own start-up lines are still there (not silenced by us).
    assert "OpenVINO is possibly not installed" in result.stderr
