"""benchmark/resume.py: a finished unit, category or fit is reused only with the same key; saved
files round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rgi_anomalib.benchmark.config import BenchmarkConfig, DatasetSpec, ModelSpec
from rgi_anomalib.benchmark.resume import (
    drop_categories,
    load_categories,
    load_done,
    load_fitted_state,
    save_category,
    save_done,
    save_fitted,
    unit_key,
)


def _cfg(**kw) -> BenchmarkConfig:
    return BenchmarkConfig(**{"run_dir": Path("run"), "datasets": [], "models": [], **kw})


def test_the_key_changes_with_whatever_decides_the_rows() -> None:
    data = DatasetSpec("d", build={"size": 32, "seed": 0})
    spec = ModelSpec("rgi", "rgi", init_args={"lam": 0.1})
    key = unit_key(_cfg(), data, spec, 0)
    assert key == unit_key(_cfg(run_dir=Path("elsewhere"), seeds=[0, 1]), data, spec, 0)
    others = [
        unit_key(_cfg(), data, ModelSpec("rgi", "rgi", init_args={"lam": 0.2}), 0),
        unit_key(_cfg(), DatasetSpec("d", build={"size": 32, "seed": 1}), spec, 0),
        unit_key(_cfg(), data, spec, 1),
        unit_key(_cfg(eval_batch_size=8), data, spec, 0),
        unit_key(_cfg(), data, spec, 0, source_key="another generator"),
    ]
    assert len({key, *others}) == 6


def test_done_rows_and_samples_round_trip_and_need_the_same_key(tmp_path: Path) -> None:
    rows = [{"model": "rgi", "category": "crack", "dice_oracle_mean": 0.25}]
    gt = np.zeros((4, 4), dtype=bool)
    gt[1, 2] = True
    samples = {
        "crack": [
            {"path": "a.png", "gt": gt, "map": np.ones((4, 4)), "pred": None, "restored": None},
            {"path": "b.png", "gt": gt, "map": np.zeros((4, 4)), "pred": gt, "restored": None},
        ]
    }
    assert load_done(tmp_path, "k") is None
    save_done(tmp_path, "k", rows, samples)
    assert load_done(tmp_path, "other key") is None
    got_rows, got_samples = load_done(tmp_path, "k")
    assert got_rows == rows
    assert [s["path"] for s in got_samples["crack"]] == ["a.png", "b.png"]
    assert got_samples["crack"][0]["pred"] is None and got_samples["crack"][0]["restored"] is None
    np.testing.assert_array_equal(got_samples["crack"][1]["pred"], gt)
    np.testing.assert_array_equal(got_samples["crack"][0]["map"], np.ones((4, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.json", "samples.npz"]  # no temp


def test_fitted_weights_round_trip_and_need_the_same_key(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_fitted(tmp_path, "k", state, 12.5)
    assert load_fitted_state(tmp_path, "other key") is None
    got, seconds = load_fitted_state(tmp_path, "k")
    assert seconds == 12.5 and torch.equal(got["w"], state["w"])


def test_scored_categories_round_trip_until_the_unit_is_done(tmp_path: Path) -> None:
    gt = np.eye(3, dtype=bool)
    sample = {"path": "c.png", "gt": gt, "map": gt * 0.5, "pred": gt, "restored": None}
    assert load_categories(tmp_path, "k") == {}
    save_category(tmp_path, "k", "crack", {"category": "crack", "dice": 0.3}, [sample])
    save_category(tmp_path, "k", "scratch", {"category": "scratch", "dice": 0.1}, None)
    save_category(tmp_path, "old key", "irregular", {"category": "irregular"}, None)
    found = load_categories(tmp_path, "k")
    assert sorted(found) == ["crack", "scratch"]  # another key's category is not reused
    row, samples = found["crack"]
    assert row == {"category": "crack", "dice": 0.3} and samples[0]["path"] == "c.png"
    np.testing.assert_array_equal(samples[0]["map"], gt * 0.5)
    assert found["scratch"] == ({"category": "scratch", "dice": 0.1}, [])
    drop_categories(tmp_path)
    assert load_categories(tmp_path, "k") == {} and not any(tmp_path.iterdir())


def test_reused_samples_come_back_in_the_dataset_s_category_order(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from rgi_anomalib.benchmark.runner import _in_dataset_order

    one = {"path": "a.png", "gt": np.zeros((2, 2), bool), "map": np.zeros((2, 2))}
    order = ["crack", "scratch", "mixed_large"]
    save_done(tmp_path, "k", [], {cat: [one] for cat in order})
    _, loaded = load_done(tmp_path, "k")  # the file keeps no order: categories load sorted
    data = SimpleNamespace(categories={cat: [] for cat in [*order, "irregular"]})
    assert list(_in_dataset_order(data, loaded)) == order
