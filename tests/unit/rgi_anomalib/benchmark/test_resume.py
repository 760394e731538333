"""benchmark/resume.py: a finished unit, category or fit is reused only with the same key and,
where weights are shared, the same weights; saved files (unit_store.py) round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rgi_anomalib.benchmark.config import BenchmarkConfig, DatasetSpec, ModelSpec
from rgi_anomalib.benchmark.resume import unit_key
from rgi_anomalib.benchmark.unit_store import (
    Scored,
    drop_categories,
    load_categories,
    load_done,
    load_fitted_state,
    save_category,
    save_done,
    save_fitted,
    weights_digest,
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
    done = load_done(tmp_path, "k")
    got_rows, got_samples = done.rows, done.samples
    assert got_rows == rows and done.weights_sha256 is None
    assert [s["path"] for s in got_samples["crack"]] == ["a.png", "b.png"]
    assert got_samples["crack"][0]["pred"] is None and got_samples["crack"][0]["restored"] is None
    np.testing.assert_array_equal(got_samples["crack"][1]["pred"], gt)
    np.testing.assert_array_equal(got_samples["crack"][0]["map"], np.ones((4, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.json", "samples.npz"]  # no temp
    save_done(tmp_path, "k", rows, None, weights_sha256="ab" * 32)
    assert load_done(tmp_path, "k").weights_sha256 == "ab" * 32


def test_the_weights_digest_changes_with_any_value_but_not_with_the_order() -> None:
    state = {"conv.weight": torch.linspace(-1, 1, 12).reshape(3, 4), "bn.n": torch.tensor(7)}
    digest = weights_digest(state)
    assert digest == weights_digest(dict(reversed(state.items())))
    assert digest == weights_digest({k: v.clone() for k, v in state.items()})
    nudged = state["conv.weight"].clone()
    nudged[2, 3] = torch.nextafter(nudged[2, 3], torch.tensor(2.0))  # one ulp
    others = [
        weights_digest({**state, "conv.weight": nudged}),
        weights_digest({**state, "conv.weight": state["conv.weight"].double()}),
        weights_digest({**state, "conv.weight": state["conv.weight"].reshape(4, 3)}),
        weights_digest({**state, "bn.m": torch.tensor(7)}),
    ]
    assert len({digest, *others}) == 5 and len(digest) == 64
    strided = state["conv.weight"].t().contiguous().t()  # the same values, not contiguous
    assert weights_digest({**state, "conv.weight": strided}) == digest


def test_saved_rows_count_only_with_the_weights_they_were_scored_with(tmp_path: Path) -> None:
    from rgi_anomalib.benchmark.resume import ResumeOptions, SharedWeights, UnitResume

    data = DatasetSpec("d", root=tmp_path)
    rgi, anogan = ModelSpec("rgi", "rgi"), ModelSpec("anogan", "anogan", fit_from="rgi")
    cfg = _cfg(run_dir=tmp_path, datasets=[data], models=[rgi, anogan])
    kept = SharedWeights({}, 1.0, "a" * 64, trained_now=False)  # loaded from fitted.pt
    again = SharedWeights({}, 1.0, "a" * 64, trained_now=True)  # trained again by this run
    other = SharedWeights({}, 1.0, "b" * 64, trained_now=True)

    def reusable(source: SharedWeights | None, recorded: str | None) -> bool:
        """Whether anogan's category scored with ``recorded`` weights counts."""
        resume = UnitResume(cfg, data, 0, ResumeOptions(enabled=True), log=lambda _: None)
        work = resume.work(anogan)
        save_category(work, resume.keys["anogan"], "crack", {"dice": 0.3}, None, recorded)
        resume = UnitResume(cfg, data, 0, ResumeOptions(enabled=True), log=lambda _: None)
        resume.shared = {} if source is None else {"rgi": source}
        drop_categories(work)
        return "crack" in resume.scored_categories(anogan)

    assert reusable(None, None) and reusable(None, "b" * 64)  # no weights loaded: the key decides
    assert reusable(kept, "a" * 64) and reusable(again, "a" * 64)  # the same weights
    assert not reusable(other, "a" * 64)  # trained again to other weights
    assert reusable(kept, None) and not reusable(again, None)  # saved before digests were kept


def test_without_resume_nothing_earlier_counts(tmp_path: Path) -> None:
    from rgi_anomalib.benchmark.resume import ResumeOptions, UnitResume

    data, rgi = DatasetSpec("d", root=tmp_path), ModelSpec("rgi", "rgi")
    cfg = _cfg(run_dir=tmp_path, datasets=[data], models=[rgi])
    resume = UnitResume(cfg, data, 0, ResumeOptions(enabled=True), log=lambda _: None)
    resume.work(rgi).mkdir(parents=True)
    save_done(resume.work(rgi), resume.keys["rgi"], [{"category": "crack"}], None)
    lines: list[str] = []
    assert UnitResume(cfg, data, 0, ResumeOptions(), log=lines.append).rows_before_fit(rgi) is None
    resumed = UnitResume(cfg, data, 0, ResumeOptions(enabled=True), log=lines.append)
    assert resumed.rows_before_fit(rgi).rows == [{"category": "crack"}] and resumed.reused == 1
    assert lines == ["rgi · d · seed 0: finished by an earlier run, its rows reused (--resume)"]


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
    row, samples = found["crack"].rows, found["crack"].samples
    assert row == {"category": "crack", "dice": 0.3} and samples[0]["path"] == "c.png"
    np.testing.assert_array_equal(samples[0]["map"], gt * 0.5)
    assert found["scratch"] == Scored({"category": "scratch", "dice": 0.1}, [])
    save_category(tmp_path, "k", "scratch", {"category": "scratch"}, None, weights_sha256="cd")
    assert load_categories(tmp_path, "k")["scratch"].weights_sha256 == "cd"
    drop_categories(tmp_path)
    assert load_categories(tmp_path, "k") == {} and not any(tmp_path.iterdir())


def test_reused_samples_come_back_in_the_dataset_s_category_order(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from rgi_anomalib.benchmark.runner import _in_dataset_order

    one = {"path": "a.png", "gt": np.zeros((2, 2), bool), "map": np.zeros((2, 2))}
    order = ["crack", "scratch", "mixed_large"]
    save_done(tmp_path, "k", [], {cat: [one] for cat in order})
    loaded = load_done(tmp_path, "k").samples  # the file keeps no order: sorted by name
    data = SimpleNamespace(categories={cat: [] for cat in [*order, "irregular"]})
    assert list(_in_dataset_order(data, loaded)) == order


def test_units_finished_with_the_old_flat_init_args_are_reused(tmp_path: Path) -> None:
    """A run written before the nested init_args (2026-12) hashed the flat spelling; the same
    settings spelled the nested way find its rows, a changed setting does not."""
    from rgi_anomalib.benchmark.resume import ResumeOptions, UnitResume

    data = DatasetSpec("d", root=tmp_path)
    nested = {"training": {"max_epochs": 2}, "inversion": {"lam": 0.1, "lr_generator": 1e-3}}
    flat = {"max_epochs": 2, "lam": 0.1, "lr_finetune": 1e-3}
    old_key = unit_key(_cfg(run_dir=tmp_path), data, ModelSpec("rgi", "rgi", init_args=flat), 0)
    for init_args, reused in ((nested, True), ({**nested, "training": {"max_epochs": 3}}, False)):
        rgi = ModelSpec("rgi", "rgi", init_args=init_args)
        cfg = _cfg(run_dir=tmp_path, datasets=[data], models=[rgi])
        resume = UnitResume(cfg, data, 0, ResumeOptions(enabled=True), log=lambda _: None)
        assert resume.keys["rgi"] != old_key
        resume.work(rgi).mkdir(parents=True, exist_ok=True)
        save_done(resume.work(rgi), old_key, [{"category": "crack"}], None)
        resume = UnitResume(cfg, data, 0, ResumeOptions(enabled=True), log=lambda _: None)
        assert (resume.rows_before_fit(rgi) is not None) is reused
