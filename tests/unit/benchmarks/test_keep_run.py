"""benchmarks/keep_run.py: what --resume needs goes into the repository and back, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script


def _keep_run():
    return load_script("keep_run")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_save_mirrors_the_resume_files_and_restore_brings_them_back(tmp_path: Path) -> None:
    keep = _keep_run()
    run, kept, back = tmp_path / "run", tmp_path / "kept", tmp_path / "back"
    resume_files = {
        ".rgi-benchmark-run": "m",
        "work/rgi_d_seed0/done.json": "{}",
        "work/rrgi_d_seed0/categories/crack.json": "{}",
    }
    not_kept = {  # data rebuilt from the config, a checkpoint, trained weights
        "datasets/d/train/0.png": "x",
        "work/rgi_d_seed0/ckpt": "c",
        "work/rgi_d_seed0/fitted.pt": "w",
    }
    _write(run, {**resume_files, **not_kept})
    assert keep.main(["save", str(run), str(kept)]) == 0
    assert keep.kept_files(kept) == {Path(p) for p in resume_files}
    assert not (kept / "datasets").exists() and not any(kept.rglob("*.tmp"))
    # The unit finishes: its categories go from the run, and from what is kept.
    (run / "work/rrgi_d_seed0/categories/crack.json").unlink()
    _write(run, {"work/rrgi_d_seed0/done.json": "{}"})
    keep.save(run, kept)
    assert not (kept / "work/rrgi_d_seed0/categories").exists()
    assert (kept / "work/rrgi_d_seed0/done.json").is_file()
    assert keep.restore(kept, back) == 3
    assert (back / "work/rrgi_d_seed0/done.json").read_text() == "{}"
    assert not (back / "work/rgi_d_seed0/fitted.pt").exists()


def test_bad_directories_are_one_clear_error(tmp_path: Path) -> None:
    keep = _keep_run()
    with pytest.raises(SystemExit, match=r"not a benchmark run directory \(no \.rgi-benchmark"):
        keep.save(tmp_path, tmp_path / "kept")
    _write(tmp_path / "kept", {".rgi-benchmark-run": "m"})
    _write(tmp_path / "busy", {"something": "x"})
    with pytest.raises(SystemExit, match="busy is not empty"):
        keep.restore(tmp_path / "kept", tmp_path / "busy")
