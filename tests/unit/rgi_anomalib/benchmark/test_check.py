"""The CI guard: fails on a drop beyond tolerance, passes on the committed baseline's own runs."""

from __future__ import annotations

import json
from pathlib import Path

from rgi_anomalib.benchmark.check import check, make_baseline
from rgi_anomalib.benchmark.cli import main

REPO = Path(__file__).resolve().parents[4]


def _rows(values: dict[tuple[str, str], float], dataset: str = "d") -> list[dict]:
    return [
        {"model": m, "dataset": dataset, "category": c, "seed": 0, "dice_oracle_mean": v}
        for (m, c), v in values.items()
    ]


def _guarded(base: dict, model: str = "rgi") -> dict:
    return next(e for e in base["entries"] if e["model"] == model and e["category"] == "mean")


def test_make_baseline_guards_category_means_with_spread_tolerance() -> None:
    a = _rows({("rgi", "crack"): 0.50, ("rgi", "scratch"): 0.40})
    b = _rows({("rgi", "crack"): 0.60, ("rgi", "scratch"): 0.40})
    base = make_baseline([a, b], labels=["avx2 seed 0", "default seed 0"])
    assert base["variants"] == ["avx2 seed 0", "default seed 0"]
    mean = _guarded(base)
    assert mean["guarded"] and mean["runs"] == [0.45, 0.5] and mean["value"] == 0.475
    assert mean["spread"] == 0.05
    assert mean["tolerance"] == 0.1061  # 3 sigma (0.0354) > mean - min (0.025) here
    crack = next(e for e in base["entries"] if e["category"] == "crack")
    scratch = next(e for e in base["entries"] if e["category"] == "scratch")
    assert not crack["guarded"] and not scratch["guarded"]
    assert scratch["tolerance"] == 0.02  # floor
    assert base["max_spread"] == 0.05  # over guarded values only


def test_make_baseline_tolerance_covers_every_variant() -> None:
    values = [0.80, 0.81, 0.79, 0.80, 0.60]  # one outlier: 3 sigma < its distance from the mean
    base = make_baseline([_rows({("rgi", "crack"): v}) for v in values])
    mean = _guarded(base)
    assert mean["tolerance"] >= mean["value"] - min(values)
    assert all(check(_rows({("rgi", "crack"): v}), base)[0] for v in values)


def test_check_passes_within_tolerance_and_fails_on_drop() -> None:
    base = make_baseline([_rows({("rgi", "crack"): 0.5, ("anogan", "crack"): 0.3})])
    ok, report = check(_rows({("rgi", "crack"): 0.49, ("anogan", "crack"): 0.9}), base)
    assert ok, report
    ok, report = check(_rows({("rgi", "crack"): 0.40, ("anogan", "crack"): 0.3}), base)
    assert not ok
    assert "FAIL (dropped 0.100 > tolerance 0.020)" in report
    assert "2/2 guarded values within tolerance" not in report
    assert "1/2 guarded values within tolerance, 1 FAILED" in report


def test_single_category_drop_is_information_only() -> None:
    """A float-level change that moves one category but not the mean does not fail."""
    base = make_baseline([_rows({("rgi", "crack"): 0.9, ("rgi", "scratch"): 0.5})])
    ok, report = check(_rows({("rgi", "crack"): 0.8, ("rgi", "scratch"): 0.6}), base)
    assert ok, report
    assert "info" in report


def test_check_fails_on_missing_entry() -> None:
    base = make_baseline([_rows({("rgi", "crack"): 0.5})])
    ok, report = check(_rows({("anogan", "crack"): 0.5}), base)
    assert not ok and "not in this run" in report


def test_committed_baseline_guard(tmp_path: Path, capsys) -> None:
    """The committed ci baseline passes on its own recorded runs and fails on a worse run."""
    baseline = json.loads((REPO / "configs/benchmark/ci_baseline.json").read_text())
    assert baseline["entries"]
    assert any(e["guarded"] for e in baseline["entries"])
    for e in baseline["entries"]:
        assert (
            e["tolerance"] >= max(0.02, 3 * e["std"], e["value"] - min(e["runs"])) - 5e-4
        )  # rounded
    assert len(baseline["variants"]) == baseline["n_runs"] >= 6  # kernel paths x GAN seeds
    assert {e["metric"] for e in baseline["entries"] if e["guarded"]} == set(baseline["metrics"])
    for i in range(baseline["n_runs"]):
        by_key: dict[tuple, dict] = {}
        for e in baseline["entries"]:
            if e["category"] == "mean":  # the check derives the means itself
                continue
            key = (e["model"], e["dataset"], e["category"])
            row = by_key.setdefault(
                key, dict(zip(("model", "dataset", "category"), key, strict=True))
            )
            row[e["metric"]] = e["runs"][i]
        rows = list(by_key.values())
        ok, report = check(rows, baseline)
        assert ok, report
        worse = [dict(r, dice_oracle_mean=r["dice_oracle_mean"] - 0.2) for r in rows]
        assert not check(worse, baseline)[0]
        worse_auroc = [dict(r, pixel_auroc=r["pixel_auroc"] - 0.06) for r in rows]
        assert not check(worse_auroc, baseline)[0]
        # through the CLI on a results.json, as CI runs it
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "results.json").write_text(json.dumps({"meta": {}, "rows": worse}))
        assert (
            main(
                ["--check", str(REPO / "configs/benchmark/ci_baseline.json"), "--results", str(run)]
            )
            == 1
        )
        assert "FAIL" in capsys.readouterr().out
        (run / "results.json").write_text(json.dumps({"meta": {}, "rows": rows}))
        assert (
            main(
                ["--check", str(REPO / "configs/benchmark/ci_baseline.json"), "--results", str(run)]
            )
            == 0
        )
