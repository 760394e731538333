"""``anomalib export``: GAN-inversion models refuse every format, RASL the static-graph ones, with
one clear message and before any file is written (issue 32)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_helpers import FAST_RGI, nested

from rgi_anomalib.models import AnoGan, Rasl, Rgi, RRgi
from rgi_anomalib.models.export import ExportNotSupportedError

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
EXPORTS = {
    "torch": lambda model, root: model.to_torch(root),
    "onnx": lambda model, root: model.to_onnx(root, input_size=(32, 32)),
    "openvino": lambda model, root: model.to_openvino(root, input_size=(32, 32)),
}


def files_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


@pytest.mark.parametrize("export_type", sorted(EXPORTS))
@pytest.mark.parametrize("model_class", [Rgi, RRgi, AnoGan])
def test_gan_inversion_refuses_every_format_before_writing(
    model_class: type, export_type: str, tmp_path: Path
) -> None:
    model = model_class(**FAST_RGI)
    with pytest.raises(ExportNotSupportedError) as error:
        EXPORTS[export_type](model, tmp_path / "export")
    message = str(error.value)
    assert f"{model_class.__name__} cannot be exported to {export_type}" in message
    assert "per-image optimisation" in message  # why
    assert "anomalib predict" in message and "rgi-anomalib inpaint" in message  # instead
    assert "\n" not in message
    assert files_under(tmp_path) == []  # not even the export folder


def test_engine_export_refuses_before_writing(tmp_path: Path) -> None:
    from anomalib.engine import Engine

    engine = Engine(default_root_dir=tmp_path / "root", logger=False)
    for export_type in ("torch", "onnx"):
        with pytest.raises(ExportNotSupportedError):
            engine.export(Rgi(**nested(**FAST_RGI)), export_type, export_root=tmp_path / "export")
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("export_type", ["onnx", "openvino"])
def test_rasl_refuses_static_graph_formats(export_type: str, tmp_path: Path) -> None:
    model = Rasl(working_size=16, n_reference=4, visualizer=False)
    with pytest.raises(ExportNotSupportedError, match="iterative decomposition") as error:
        EXPORTS[export_type](model, tmp_path)
    assert "--export_type torch" in str(error.value)
    assert files_under(tmp_path) == []


def test_rasl_torch_export_still_works_and_matches(tmp_path: Path) -> None:
    model = Rasl(working_size=16, n_reference=4, transform="translation", max_outer=2)
    model.model.fit(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    model.eval()
    path = model.to_torch(tmp_path)
    loaded = torch.load(path, weights_only=False)["model"]  # what TorchInferencer loads
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded(image).anomaly_map, model(image).anomaly_map)


def test_uncaught_refusal_prints_one_line_even_under_rich_tracebacks(tmp_path: Path) -> None:
    """``anomalib export`` installs rich's traceback printer: the refusal still prints as one
    line (exit status 1), and other errors keep their traceback."""
    code = (
        "import sys; from rich import traceback; traceback.install()\n"
        "from rgi_anomalib.models import Rgi\n"
        f"Rgi(image_size=32, visualizer=False).to_torch({str(tmp_path / 'out')!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "cannot be exported" in line]
    assert line.startswith("error: Rgi cannot be exported to torch:")
    assert files_under(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", ["anomalib", "rgi-anomalib"])
def test_export_command_refuses_with_one_line(
    command: str, tiny_datamodule: object, tmp_path: Path
) -> None:
    from anomalib.engine import Engine

    model = Rgi(**nested(**{**FAST_RGI, "max_epochs": 1}))
    engine = Engine(default_root_dir=tmp_path / "train", logger=False, enable_progress_bar=False)
    engine.fit(model=model, datamodule=tiny_datamodule)
    checkpoint = engine.trainer.checkpoint_callback.best_model_path
    result = subprocess.run(
        [
            str(BIN / command), "export", "--model", "rgi", "--model.image_size", "32",
            "--export_type", "torch", "--ckpt_path", checkpoint,
            "--default_root_dir", str(tmp_path / "export"),
        ],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Serialization of parametrized" not in output
    (line,) = [line for line in output.splitlines() if "cannot be exported" in line]
    assert "per-image optimisation" in line and "anomalib predict" in line
    assert not (tmp_path / "export").exists()
