"""The ``synthetic-btad`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sbtad_helpers import leftovers, tree_hash

from synthetic_btad import load_summary
from synthetic_btad.cli import main

TINY = ["--size", "32", "--n-train", "3", "--n-test-per-category", "2", "--no-progress"]


def test_cli_builds_with_stand_ins_and_notices(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["--out", str(tmp_path / "ds"), "--seed", "4", *TINY]) == 0
    cap = capsys.readouterr()
    notices = [line for line in cap.err.splitlines() if line.startswith("notice:")]
    assert len(notices) == 2
    assert "no BTAD root given" in notices[0] and "no MVTec AD root given" in notices[1]
    assert "wrote" in cap.out and "test/crack 2" in cap.out
    s = load_summary(tmp_path / "ds")
    assert s.data["parameters"]["seed"] == 4 and s.counts["total_images"] == 13


def test_cli_same_as_api(tmp_path: Path) -> None:
    from synthetic_btad import build_dataset

    assert main(["--out", str(tmp_path / "cli"), *TINY, "--categories", "crack", "scratch"]) == 0
    build_dataset(tmp_path / "api", size=32, n_train=3, n_test_per_category=2,
                  categories=["crack", "scratch"])  # fmt: skip
    assert tree_hash(tmp_path / "cli") == tree_hash(tmp_path / "api")


def test_cli_errors_exit_2_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    assert main(["--out", str(out), "--btad-root", str(tmp_path / "nope"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "error: BTAD root" in err and "expected <root>/<product>/train/ok" in err
    assert "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path, "ds") == []

    assert main(["--out", str(out), *TINY]) == 0
    assert main(["--out", str(out), *TINY, "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--out", str(out), *TINY, "--seed", "1", "--overwrite"]) == 0
    assert load_summary(out).data["parameters"]["seed"] == 1


def test_cli_grouping_rules_file(tmp_path: Path, real_mvtec_root: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"crack": ["*crack*", "*broken*"], "scratch": ["bent*"]}))
    out = tmp_path / "ds"
    args = ["--out", str(out), "--mvtec-root", str(real_mvtec_root), "--grouping-rules", str(rules)]
    assert main([*args, *TINY]) == 0
    per_cat = load_summary(out).data["sources"]["masks"]["per_category"]
    assert per_cat["scratch"]["defect_types"] == {"grid/bent": 3, "transistor/bent_lead": 2}
    assert load_summary(out).data["parameters"]["grouping"]["name_rules"]["scratch"] == ["bent*"]
    rules.write_text("{not json")
    assert main(["--out", str(tmp_path / "x"), "--grouping-rules", str(rules), *TINY]) == 2


def test_console_script_help() -> None:
    exe = Path(sys.executable).with_name("synthetic-btad")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "synthetic_btad.cli"]
    res = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for flag in (
        "--bases",
        "--btad-root",
        "--mvtec-root",
        "--out",
        "--size",
        "--seed",
        "--overwrite",
    ):
        assert flag in res.stdout
