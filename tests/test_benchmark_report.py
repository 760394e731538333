"""Report writing on fabricated rows: all files, Table-2 shape, best in bold, no temp leftovers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

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
