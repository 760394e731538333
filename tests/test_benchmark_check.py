"""The CI guard: fails on a drop beyond tolerance, passes on the committed baseline's own runs."""

from __future__ import annotations

import json
from pathlib import Path

from rgi_anomalib.benchmark.check import check, make_baseline
from rgi_anomalib.benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]


def _rows(values: dict[tuple[str, str], float], dataset: str = "d") -> list[dict]:
    return [
        {"model": m, "dataset": dataset, "category": c, "seed": 0, "dice_oracle_mean": v}
        for (m, c), v in values.items()
    ]


def test_make_baseline_tolerance_from_spread() -> None:
    a = _rows({("rgi", "crack"): 0.50, ("rgi", "scratch"): 0.40})
    b = _rows({("rgi", "crack"): 0.53, ("rgi", "scratch"): 0.40})
    base = make_baseline([a, b])
    crack = next(e for e in base["entries"] if e["category"] == "crack")
    scratch = next(e for e in base["entries"] if e["category"] == "scratch")
    assert crack["value"] == 0.5 and crack["spread"] == 0.03
    assert crack["tolerance"] == 0.09  # 3 x spread
    assert scratch["tolerance"] == 0.02  # floor
    assert base["max_spread"] == 0.03


def test_check_passes_within_tolerance_and_fails_on_drop() -> None:
    base = make_baseline([_rows({("rgi", "crack"): 0.5, ("anogan", "crack"): 0.3})])
    ok, report = check(_rows({("rgi", "crack"): 0.49, ("anogan", "crack"): 0.9}), base)
    assert ok, report
    ok, report = check(_rows({("rgi", "crack"): 0.40, ("anogan", "crack"): 0.3}), base)
    assert not ok
    assert "FAIL (dropped 0.100 > tolerance 0.020)" in report
    assert "1/2 guarded values within tolerance, 1 FAILED" in report


def test_check_fails_on_missing_entry() -> None:
    base = make_baseline([_rows({("rgi", "crack"): 0.5})])
    ok, report = check(_rows({("anogan", "crack"): 0.5}), base)
    assert not ok and "not in this run" in report


def test_committed_baseline_guard(tmp_path: Path, capsys) -> None:
    """The committed ci baseline passes on its own recorded runs and fails on a worse run."""
    baseline = json.loads((REPO / "configs/benchmark/ci_baseline.json").read_text())
    assert baseline["entries"]
    for e in baseline["entries"]:
        assert e["tolerance"] >= max(0.02, 3 * e["spread"]) - 1e-9
    for i in range(baseline["n_runs"]):
        rows = [
            {
                "model": e["model"],
                "dataset": e["dataset"],
                "category": e["category"],
                "dice_oracle_mean": e["runs"][i],
            }
            for e in baseline["entries"]
        ]
        ok, report = check(rows, baseline)
        assert ok, report
        worse = [dict(r, dice_oracle_mean=r["dice_oracle_mean"] - 0.2) for r in rows]
        assert not check(worse, baseline)[0]
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
