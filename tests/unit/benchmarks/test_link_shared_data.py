"""benchmarks/link_shared_data.py: real shared images as BTAD / MVTec roots for synthetic_btad."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

from synthetic_btad import build_dataset

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data"


def _linker():
    return load_script("link_shared_data")


def test_missing_shared_folder_is_one_clear_error(tmp_path: Path) -> None:
    link = _linker()
    with pytest.raises(FileNotFoundError, match=r"--shared .*missing .*hazelnut_reduced"):
        link.link_shared_data(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert link.main(["--shared", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_links_real_data_and_builds_a_dataset(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared real data not available: {SHARED}")
    counts = _linker().link_shared_data(SHARED, tmp_path / "roots")
    assert counts == {"base_photos": 52, "masks": 27}
    summary = build_dataset(
        tmp_path / "ds",
        btad_root=tmp_path / "roots" / "btad",
        mvtec_root=tmp_path / "roots" / "mvtec",
        size=32,
        n_train=8,
        n_test_per_category=2,
    )
    assert summary.stand_ins == {"bases": False, "masks": False}
    assert len(list((tmp_path / "ds" / "test" / "crack").glob("*.png"))) == 2
