"""Reconstruction gap: the metric on known answers, its logging at the end of fit, the grid."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from model_helpers import FAST_RGI, nested
from PIL import Image

from rgi_anomalib.benchmark.images import image_loader
from rgi_anomalib.benchmark.predict import gap_columns, predict
from rgi_anomalib.models import Rgi
from rgi_anomalib.models.gan_inversion.gap import reconstruction_gap
from rgi_anomalib.models.gan_inversion.gap_report import GRID_NAME

LOGGER = "rgi_anomalib.models.gan_inversion.gap_report"


def test_gap_is_zero_for_a_perfect_restoration() -> None:
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    gap = reconstruction_gap(images, images.clone())
    assert gap.rmse.shape == gap.p99.shape == (3,)
    assert torch.equal(gap.rmse, torch.zeros(3)) and torch.equal(gap.p99, torch.zeros(3))


def test_constant_offset_is_reported_in_unit_range() -> None:
    images = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    gap = reconstruction_gap(images, images + 0.2)  # 0.2 in [-1, 1] == 0.1 in [0, 1]
    assert torch.allclose(gap.rmse, torch.full((2,), 0.1), atol=1e-6)
    assert torch.allclose(gap.p99, torch.full((2,), 0.1), atol=1e-6)
    unit = reconstruction_gap(images * 0.5 + 0.5, images * 0.5 + 0.6, value_range=1.0)
    assert torch.allclose(unit.rmse, torch.full((2,), 0.1), atol=1e-6)


def test_gap_p99_sees_a_small_defect_that_rmse_dilutes() -> None:
    images = torch.zeros(1, 3, 10, 10)
    restored = images.clone()
    restored[..., :2, :] = 1.0  # 20 % of the pixels off by 0.5 in [0, 1] units
    gap = reconstruction_gap(images, restored)
    assert gap.p99.item() == pytest.approx(0.5)
    assert gap.rmse.item() == pytest.approx(0.5 * math.sqrt(0.2))


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"images \(2, 3, 8, 8\) and restored \(2, 3, 4, 4\)"):
        reconstruction_gap(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4))


@pytest.mark.slow
def test_fit_logs_the_gap_writes_the_grid_and_predict_carries_it(
    tiny_folder: Path, tiny_datamodule, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from anomalib.engine import Engine

    caplog.set_level(logging.INFO, logger=LOGGER)
    datamodule = tiny_datamodule
    model = Rgi(**nested(**FAST_RGI))
    engine = Engine(default_root_dir=tmp_path, logger=False)
    engine.fit(model, datamodule=datamodule)

    # Logged once, after the last epoch, over the normal validation images.
    metrics = engine.trainer.callback_metrics
    rmse, p99 = metrics["reconstruction_gap_rmse"], metrics["reconstruction_gap_p99"]
    assert 0 < rmse.item() < 0.5 and 0 < p99.item() < 1
    assert "reconstruction gap over" in caplog.text and "normal validation images" in caplog.text

    # The grid: 3 columns of 32 px (2 px padding), one row per kept image, no temp leftovers.
    (grid,) = tmp_path.rglob(GRID_NAME)
    assert grid.parent.name == "reconstruction"
    assert not list(grid.parent.glob("*.tmp"))
    width, height = Image.open(grid).size
    assert width == 3 * 34 + 2 and (height - 2) % 34 == 0 and 2 <= (height - 2) // 34 <= 8

    # Predict batches carry the per-image gap, which the benchmark runner reads.
    good = sorted((tiny_folder / "test/good").glob("*.png"))
    pred = predict(engine, model, image_loader(good, None, 0, 3))
    assert len(pred.gap_rmse) == len(pred.gap_p99) == len(good)
    assert all(0 < v < 1 for v in pred.gap_rmse + pred.gap_p99)
    columns = gap_columns(pred, pred)
    assert columns["gap_rmse"] == pytest.approx(sum(pred.gap_rmse) / len(good))

    # Validation without a normal image says so and logs no gap.
    caplog.clear()
    defects = sorted((tiny_folder / "test/defect").glob("*.png"))[:3]
    (validated,) = engine.validate(model, dataloaders=image_loader(defects, None, 1, 3))
    assert "reconstruction_gap_rmse" not in validated
    assert "no normal validation images" in caplog.text
