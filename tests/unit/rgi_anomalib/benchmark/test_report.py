"""Report writing on fabricated rows (all files, Table-2 shape, best in bold, no temp leftovers)
and the runner's reconstruction-gap columns."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rgi_anomalib.benchmark.predict import gap_columns
from rgi_anomalib.benchmark.predict import predict as _predict
from rgi_anomalib.benchmark.report import dataset_tables, markdown_table, write_outputs


def _row(model: str, cat: str, dice: float, form: str = "") -> dict:
    return {
        "model": model,
        "form": form,
        "dataset": "d",
        "category": cat,
        "seed": 0,
        "dice_oracle_mean": dice,
        "dice_oracle_std": 0.1,
        "pixel_auroc": 0.5,
        "image_auroc": math.nan,
        "fit_seconds": 1.0,
        "test_seconds_per_image": 0.1,
    }


def test_markdown_table_bold_best() -> None:
    rows = [
        _row("rgi", "crack", 0.6),
        _row("anogan", "crack", 0.4, "l2"),
        _row("rgi", "scratch", 0.2),
        _row("anogan", "scratch", 0.3, "l2"),
    ]
    table = markdown_table(rows, "dice_oracle_mean", "Dice")
    assert "| method | crack | scratch | mean |" in table
    assert "| rgi | **0.600 ± 0.100** | 0.200 ± 0.100 | **0.400** |" in table
    assert "| anogan (l2) | 0.400 ± 0.100 | **0.300 ± 0.100** | 0.350 |" in table


def test_one_table_per_dataset() -> None:
    rows = [_row("rgi", "crack", 0.6), _row("anogan", "crack", 0.4)]
    rows += [
        {**_row("rgi", "crack", 0.1), "dataset": "e"},
        {**_row("anogan", "crack", 0.2), "dataset": "e"},
    ]
    text = dataset_tables(rows, "dice_oracle_mean", "Dice")
    assert "### Dice · dataset d" in text and "### Dice · dataset e" in text
    assert "| rgi | **0.600 ± 0.100** | **0.600** |" in text  # best within dataset d
    assert "| anogan | **0.200 ± 0.100** | **0.200** |" in text  # best within dataset e


def test_write_outputs(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    rows = [_row("rgi", "crack", 0.6), _row("anogan", "crack", 0.4)]
    sample = {
        "path": str(img),
        "gt": np.zeros((8, 8), bool),
        "map": np.zeros((8, 8)),
        "pred": np.zeros((8, 8), bool),
        "restored": np.zeros((8, 8, 3)),
    }
    qual = {"rgi": {"crack": [sample]}, "anogan": {"crack": [dict(sample, restored=None)]}}
    table = write_outputs(tmp_path, rows, {"notes": ["a note"]}, qual)
    assert "**0.600 ± 0.100**" in table
    names = {"results.csv", "results.json", "results.md", "dice_bar.png", "qualitative.png"}
    assert names <= {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rows"][0]["image_auroc"] is None  # NaN -> null
    md = (tmp_path / "results.md").read_text()
    assert "Pixel AUROC" in md and "a note" in md and "Image AUROC" not in md


class _FakeEngine:
    """Returns fixed predict batches, as ``Engine.predict(return_predictions=True)`` does."""

    def __init__(self, batches: list[SimpleNamespace]) -> None:
        self.batches = batches

    def predict(self, **kwargs) -> list[SimpleNamespace]:
        del kwargs
        return self.batches


def _batch(n: int, **extra: torch.Tensor) -> SimpleNamespace:
    return SimpleNamespace(
        anomaly_map=torch.zeros(n, 1, 4, 4),
        gt_mask=None,
        pred_score=torch.zeros(n),
        image_path=[f"{i}.png" for i in range(n)],
        **extra,
    )


def test_predict_reads_the_gap_and_rows_get_its_means() -> None:
    gap = {"reconstruction_rmse": torch.tensor([0.1, 0.3]), "reconstruction_p99": torch.ones(2)}
    loader = SimpleNamespace(dataset=[0, 1, 2])
    normal = _predict(_FakeEngine([_batch(2, **gap)]), None, SimpleNamespace(dataset=[0, 1]))
    assert normal.gap_rmse == pytest.approx([0.1, 0.3]) and normal.gap_p99 == [1.0, 1.0]
    two_batches = [
        _batch(1, reconstruction_rmse=torch.tensor([0.4]), reconstruction_p99=torch.ones(1)),
        _batch(2, reconstruction_rmse=torch.tensor([0.1, 0.1]), reconstruction_p99=torch.ones(2)),
    ]
    defect = _predict(_FakeEngine(two_batches), None, loader)
    assert gap_columns(normal, defect) == pytest.approx(
        {"gap_rmse": 0.2, "gap_p99": 1.0, "gap_rmse_defect": 0.2}
    )
    # A model whose batches carry no gap (PatchCore, DRAEM, ...) gets NaN, not an error.
    plain = _predict(_FakeEngine([_batch(3)]), None, loader)
    assert len(plain.gap_rmse) == 3 and all(math.isnan(v) for v in plain.gap_p99)
    assert all(math.isnan(v) for v in gap_columns(plain, plain).values())


def test_gap_columns_in_the_cost_table_csv_and_json(tmp_path: Path) -> None:
    gap = {"gap_rmse": 0.05, "gap_p99": 0.125, "gap_rmse_defect": 0.25}
    nan = dict.fromkeys(gap, math.nan)
    rows = [
        {**_row("rgi", "crack", 0.6), **gap},
        {**_row("rgi", "scratch", 0.5), **gap, "gap_rmse_defect": 0.35},
        {**_row("patchcore", "crack", 0.4), **nan},
        {**_row("patchcore", "scratch", 0.3), **nan},
    ]
    write_outputs(tmp_path, rows, {}, {})
    md = (tmp_path / "results.md").read_text()
    header = "| method | fit s | test s / image | gap RMSE | gap p99 | gap RMSE (defect) |"
    assert header in md
    assert "| rgi | 1.0 | 0.100 | 0.050 | 0.125 | 0.300 |" in md
    assert "| patchcore | 1.0 | 0.100 | n/a | n/a | n/a |" in md
    csv_header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert {"gap_rmse", "gap_p99", "gap_rmse_defect"} <= set(csv_header)
    data = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert data[0]["gap_rmse"] == 0.05 and data[2]["gap_rmse"] is None  # NaN -> null


def test_restoration_tables_in_results_md_csv_and_json(tmp_path: Path) -> None:
    """Absorption (lowest in bold), PSNR and the residual ratio; n/a for a model without a
    restoration; an older run's rows without the columns still report, as not measured."""
    restoration = {"absorption_mean": 0.5, "restoration_psnr": 30.0, "defect_residual_ratio": 2.0}
    nan = dict.fromkeys(["absorption", *restoration], math.nan)
    rows = [
        {**_row("rgi", "crack", 0.6), **restoration, "absorption": 0.25},
        {**_row("anogan", "crack", 0.5), **restoration, "absorption": 0.75},
        {**_row("patchcore", "crack", 0.4), **nan},
        _row("draem", "crack", 0.3),  # written before the columns existed
    ]
    write_outputs(tmp_path, rows, {}, {})
    md = (tmp_path / "results.md").read_text()
    assert "### Restoration under the defect" in md
    assert "| rgi | **0.250** | **0.250** |" in md and "| anogan | 0.750 | 0.750 |" in md
    assert "| patchcore | n/a | n/a |" in md and "| draem | n/a | n/a |" in md
    assert "Restoration PSNR in the mask" in md and "99th percentile" in md
    data = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert data[0]["absorption"] == 0.25 and data[2]["absorption"] is None
    assert "absorption" not in data[3]
    csv_header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert {"absorption", "absorption_mean", "restoration_psnr"} <= set(csv_header)
    write_outputs(tmp_path, [_row("rgi", "crack", 0.6)], {}, {})  # an older run: no section
    assert "Restoration under the defect" not in (tmp_path / "results.md").read_text()


def test_result_row_flattens_the_restoration_columns() -> None:
    from rgi_anomalib.benchmark.rows import ResultRow

    row = ResultRow("m", "M", "", "d", "c", 0, 32, 1, 1, 0, True, {"aupro": 0.5},
                    {"gap_rmse": 0.1}, {"absorption": 0.2})  # fmt: skip
    flat = list(row.as_dict())
    assert flat.index("aupro") < flat.index("gap_rmse") < flat.index("absorption")
    assert flat.index("absorption") < flat.index("fit_seconds")


def test_prediction_loader_keeps_the_image_order(monkeypatch) -> None:
    """predict_groups splits the predictions by position: its loader must not shuffle."""
    from torch.utils.data import SequentialSampler

    from rgi_anomalib.benchmark import predict as predict_module
    from rgi_anomalib.benchmark.images import Geometry

    seen = {}

    def fake_predict(engine, model, loader, keep, score_size=None, twins=None):
        seen["sampler"] = loader.sampler
        return predict_module.Predictions()

    monkeypatch.setattr(predict_module, "predict", fake_predict)
    predict_module.predict_groups(None, None, [([], None, 0)], 4, 0, None, Geometry("resize", 32))
    assert isinstance(seen["sampler"], SequentialSampler)


def test_padded_images_are_cropped_back_maps_masks_and_restorations(tmp_path: Path) -> None:
    """square: pad: every per-image array is cut back to the original image's box."""
    batch = _batch(1, restored_image=torch.rand(1, 3, 4, 4))
    batch.gt_mask = torch.ones(1, 4, 4, dtype=torch.bool)
    batch.image_path = [str(tmp_path / "0.png")]  # read again for the restoration metrics
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(batch.image_path[0])
    dataset = _Boxed({batch.image_path[0]: (0.0, 0.25, 1.0, 0.5)})
    out = _predict(_FakeEngine([batch]), None, SimpleNamespace(dataset=dataset), keep_restored=1)
    assert out.maps[0].shape == out.gts[0].shape == (4, 2)
    assert out.restored[0].shape == (4, 2, 3)
    expected = batch.restored_image[0, :, :, 1:3].permute(1, 2, 0).numpy()
    assert np.array_equal(out.restored[0], expected)


class _Boxed(list):
    """A one-image dataset whose image was padded: the original is columns 1-2 of 4."""

    def __init__(self, boxes: dict | None = None) -> None:
        super().__init__([0])
        self.boxes = boxes or {"0.png": (0.0, 0.25, 1.0, 0.5)}
