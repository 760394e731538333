"""``rgi-anomalib report`` (benchmark/draws): paired verdicts; λ cross-validation never picks on
the test draw; the command on two tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rgi_anomalib.benchmark.draws import runs, tables, verdicts
from rgi_anomalib.benchmark.draws.runs import ReportError


def _row(model: str, draw: str, dice: float, category: str = "crack") -> dict:
    return {
        "model": model,
        "dataset": draw,
        "category": category,
        "dice_oracle_mean": dice,
        "init_args": json.dumps({"fitted": {"lam": 0.01}} if model.endswith("auto") else {}),
        "image_size": 64,
        "n_defect": 5,
        "n_normal": 5,
        "fit_seconds": 1.0,
        "test_seconds_per_image": 0.1,
    }


def _draws(model: str, values: tuple[float, ...]) -> list[dict]:
    """One row per draw a, b, c."""
    return [_row(model, d, v) for d, v in zip("abc", values, strict=True)]


def test_lambda_cross_validation_picks_on_other_draws_only() -> None:
    # λ 0.1 is best on draws a and b, λ 0.02 only on c: c's score must come from 0.1 (picked on
    # a and on b), and the test draw's own best is never used for itself.
    dice = {"rgi": (0.1, 0.1, 0.1), "rgi_lam0.1": (0.5, 0.5, 0.2), "rgi_lam0.02": (0.2, 0.2, 0.9)}
    rows = [row for m, vs in dice.items() for row in _draws(m, vs)]
    scores, picks = verdicts.cross_validated(runs.index(rows), "rgi", "crack")
    assert scores[2] == 0.2  # draw c scored with 0.1, picked on a and b
    assert scores[0] == (0.5 + 0.2) / 2  # draw a: 0.1 picked on b, 0.02 picked on c
    assert picks == ["0.1", "0.02", "0.1", "0.02", "0.1", "0.1"]


def test_verdict_needs_every_draw_beyond_the_spread() -> None:
    rows = _draws("rrgi", (0.5, 0.6, 0.55))
    rows += _draws("rasl", (0.3, 0.35, 0.3))
    rows += _draws("anogan", (0.6, 0.4, 0.5))
    table = runs.index(rows)
    assert verdicts.verdict(table, "rrgi", "rasl", ["crack"])[0] == "holds"
    assert verdicts.verdict(table, "rasl", "rrgi", ["crack"])[0] == "does not hold"
    assert verdicts.verdict(table, "rrgi", "anogan", ["crack"])[0] == "cannot tell"
    text = tables.report(rows, [Path("x")], "cmd")
    assert "R-RGI beats rasl" in text and "**holds**" in text


def test_flag_every_pixel_dice_from_the_masks_on_disk(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    truth = tmp_path / "run" / "datasets" / "a" / "ground_truth" / "crack"
    truth.mkdir(parents=True)
    half = np.zeros((8, 8), np.uint8)
    half[:, :4] = 255  # a = 1/2 -> 2a / (a + 1) = 2/3
    quarter = np.zeros((8, 8), np.uint8)
    quarter[:4, :4] = 255  # a = 1/4 -> 2/5
    Image.fromarray(half).save(truth / "000_mask.png")
    Image.fromarray(quarter).save(truth / "001_mask.png")
    assert abs(runs.flag_all_dice(truth, 4) - (2 / 3 + 2 / 5) / 2) < 1e-9
    rows = [_row("rgi", "a", 0.3)]
    expected = {"crack": {"a": runs.flag_all_dice(truth, 64)}}
    assert runs.flag_all_row([tmp_path / "run"], rows) == expected
    text = tables.report(rows, [tmp_path / "run"], "cmd")
    assert "| *flag every pixel* | 0.533 ± 0.000 | 0.533 ± 0.000 |" in text


def test_no_verdict_between_two_methods_that_score_like_flagging_every_pixel() -> None:
    rows = _draws("rrgi", (0.105, 0.125, 0.115))
    rows += _draws("rasl", (0.08, 0.1, 0.09))
    rows += _draws("draem", (0.1025, 0.1225, 0.1125))
    table = runs.index(rows)
    chance = {"crack": {"a": 0.1, "b": 0.12, "c": 0.11}}
    # 0.025 ahead of rasl in every draw, but neither is ahead of a constant map
    result, evidence = verdicts.verdict(table, "rrgi", "rasl", ["crack"], chance)
    assert result == "cannot tell" and "flagging every pixel" in evidence
    assert verdicts.verdict(table, "rrgi", "rasl", ["crack"])[0] == "holds"  # chance unknown
    # a constant 0.0025 lead has sd 0 but is below MIN_EFFECT: level
    assert verdicts.verdict(table, "rrgi", "draem", ["crack"])[0] == "cannot tell"


def _run_dir(root: Path, rows: list[dict], mask_byte: int = 255) -> Path:
    """A run directory with ``results.json`` and draw a's test image and mask on disk."""
    root.mkdir()
    (root / "results.json").write_text(json.dumps({"rows": rows}))
    for sub, data in (("test/crack/000.png", b"img"), ("ground_truth/crack/000_mask.png", b"")):
        path = root / "datasets" / "a" / sub
        path.parent.mkdir(parents=True)
        path.write_bytes(data + bytes([mask_byte]))
    return root


def test_baseline_rows_fill_in_only_missing_models_of_identical_draws(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "run", [_row("rgi", "a", 0.3)])
    same = _run_dir(tmp_path / "same", [_row("rgi", "a", 0.9), _row("rasl", "a", 0.2)])
    rows, taken = runs.merge_baselines(runs.load_runs([run]), [run], [same])
    assert taken == ["rasl"]
    assert {(r["model"], r["dice_oracle_mean"]) for r in rows} == {("rgi", 0.3), ("rasl", 0.2)}
    other = _run_dir(tmp_path / "other", [_row("rasl", "a", 0.2)], mask_byte=0)
    with pytest.raises(ReportError, match=r"draw a in .*other differs"):
        runs.merge_baselines(runs.load_runs([run]), [run], [other])


def test_baselines_never_mix_in_another_generator_s_gan_rows(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "run", [_row("rgi", "a", 0.3)])
    base = _run_dir(tmp_path / "base", [_row("rgi_lam0.1", "a", 0.9), _row("draem", "a", 0.2)])
    _, taken = runs.merge_baselines(runs.load_runs([run]), [run], [base])
    assert taken == ["draem"]  # the λ-grid row was solved on the other run's generator
    _, taken = runs.merge_baselines(runs.load_runs([run]), [run], [base], ("rgi_lam0.1",))
    assert taken == ["rgi_lam0.1"]


def test_gan_seed_table_pairs_the_same_draw(tmp_path: Path) -> None:
    main = [
        {**_row(m, d, v, c), "gap_rmse": 0.05}
        for m in ("rgi", "anogan")
        for d, v in (("a", 0.2), ("b", 0.4))
        for c in ("crack", "scratch")
    ]
    other = [{**_row("rgi", "a", 0.5, c), "gap_rmse": 0.03} for c in ("crack", "scratch")]
    lines = tables.gan_seed_table(runs.index(main), runs.index(other), ["crack", "scratch"])
    assert len(lines) == 3  # header, rule, rgi on draw a (anogan has no other seed; b neither)
    assert lines[2] == "| rgi | a | 0.200 / 0.500 (+0.300) | 0.050 / 0.030 | 0.141 |"


def test_claims_also_judged_with_the_other_gan_seed_on_the_same_draws() -> None:
    rows = [
        {**r, "seed": 0}
        for m, v in (("rrgi", (0.30, 0.31, 0.32)), ("rasl", (0.1, 0.1, 0.11)), ("rgi", (0.2,) * 3))
        for r in _draws(m, v)
    ]
    other = [{**r, "seed": 1} for r in _draws("rrgi", (0.10, 0.12, 0.11))]
    label, table = verdicts.other_seed_table(rows, other)
    assert label == "GAN seed 1"
    assert set(table["rasl", "crack"]) == {"a", "b", "c"}  # the baseline does not need a GAN
    assert ("rgi", "crack") not in table  # this seed's GAN rows never stand in for the other's
    lines = verdicts.claims(runs.index(rows), ["crack"], None, (label, table))
    rasl = next(line for line in lines if "beats rasl" in line)
    assert "| **holds** |" in rasl and "| **cannot tell** |" in rasl
    assert "| – | not run with that seed |" in next(line for line in lines if "on rgi" in line)
    # a verdict needs every draw: another seed on one draw only gets no column
    assert verdicts.other_seed_table(rows, other[:1]) is None


def test_lambda_table_without_label_free_rows_says_so() -> None:
    lines = tables.lambda_table(runs.index(_draws("rgi", (0.1, 0.2, 0.3))), ["crack"])
    assert not any("auto" in line for line in lines if line.startswith("| rgi"))
    assert lines[-1].endswith("none (no `*_auto` rows in these runs)")
    rows = _draws("rgi", (0.1, 0.2, 0.3)) + _draws("rgi_auto", (0.0, 0.1, 0.0))
    lines = tables.lambda_table(runs.index(rows), ["crack"])
    assert any("auto (normal images), oracle Dice" in line for line in lines)
    assert lines[-1].endswith(": 0.0100")


def test_restoration_section_mean_sd_over_draws_and_dash_where_not_measured() -> None:
    rows = [
        {**r, "absorption": a, "restoration_psnr": 30.0, "defect_residual_ratio": 2.0}
        for r, a in zip(_draws("rgi", (0.3, 0.3, 0.3)), (0.2, 0.3, 0.4), strict=True)
    ]
    rows += [{**r, "absorption": None} for r in _draws("patchcore", (0.5, 0.5, 0.5))]
    lines = tables.restoration_table(runs.index(rows), ["rgi", "patchcore"], ["crack"])
    assert "| rgi | 0.300 ± 0.100 | 0.300 ± 0.100 |" in lines
    assert "| patchcore | – | – |" in lines
    # an older run's results.json has none of the columns: said once, no empty tables
    old = tables.restoration_table(runs.index(_draws("rgi", (0.3, 0.3, 0.3))), ["rgi"], ["crack"])
    assert old[0].startswith("Not measured in these runs")


def test_report_command_on_two_runs(tmp_path: Path) -> None:
    """The real ``rgi-anomalib report`` on two runs of one draw each: mean ± sd over the draws."""
    import os
    import subprocess
    import sys

    run_dirs = []
    for draw, rgi, rasl in (("s0", 0.2, 0.1), ("s1", 0.4, 0.1)):
        run_dir = tmp_path / f"run_{draw}"
        run_dir.mkdir()
        rows = [_row("rgi", draw, rgi), _row("rasl", draw, rasl)]
        (run_dir / "results.json").write_text(json.dumps({"meta": {}, "rows": rows}))
        run_dirs.append(str(run_dir))
    out = tmp_path / "results" / "report.md"
    script = Path(sys.executable).parent / "rgi-anomalib"
    proc = subprocess.run(
        [str(script), "report", *run_dirs, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"wrote {out}"
    text = out.read_text()
    # oracle Dice of rgi: 0.2 and 0.4 -> mean 0.300, sample sd 0.141 (per category and mean)
    assert "| rgi | 0.300 ± 0.141 | 0.300 ± 0.141 |" in text
    assert "| rasl | 0.100 ± 0.000 | 0.100 ± 0.000 |" in text
    assert f"Command: `rgi-anomalib report {' '.join(run_dirs)} --out {out}`" in text
    missing = subprocess.run(
        [str(script), "report", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2
    assert "rgi-anomalib report: error:" in missing.stderr and "results.json not found" in (
        missing.stderr
    )


def test_nan_values_count_as_not_measured() -> None:
    """PatchCore rows carry NaN where a column does not apply (its reconstruction gap): the
    report shows a dash there instead of failing in ``statistics.stdev``."""
    rows = [{**r, "gap_rmse": float("nan")} for r in _draws("patchcore", (0.5, 0.5, 0.5))]
    table = runs.index(rows)
    assert verdicts.cell(verdicts.values(table, "patchcore", "crack", "gap_rmse")) == "–"
    assert verdicts.category_means(table, "patchcore", ["crack"], "gap_rmse") == [None] * 3


def test_option_rows_are_tabled_after_the_paper_s_methods(tmp_path: Path) -> None:
    """A row the paper does not have (an option such as rgi_features) gets its mean ± sd too."""
    rows = _draws("rgi", (0.2, 0.2, 0.2)) + _draws("rgi_features", (0.3, 0.5, 0.4))
    text = tables.report(rows, [tmp_path], "rgi-anomalib report ...")
    assert "| rgi_features | 0.400 ± 0.100 | 0.400 ± 0.100 |" in text
    assert text.index("| rgi |") < text.index("| rgi_features |")


def test_models_option_keeps_only_the_rows_named(tmp_path: Path) -> None:
    from rgi_anomalib.benchmark.draws.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = _draws("rgi", (0.2, 0.2, 0.2)) + _draws("rgi_gms", (0.3, 0.3, 0.3))
    (run_dir / "results.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    out = tmp_path / "r.md"
    assert main([str(run_dir), "--models", "rgi", "--out", str(out)]) == 0
    assert "| rgi |" in out.read_text() and "rgi_gms" not in out.read_text()
    assert main([str(run_dir), "--models", "nope"]) == 2
