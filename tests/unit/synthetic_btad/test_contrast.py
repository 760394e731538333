"""Defect contrast: in-mask RMS difference between a defect image and its clean twin."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sbtad_helpers import make_btad_root

from synthetic_btad import (
    CATEGORIES,
    DefectContrast,
    MaskError,
    build_dataset,
    defect_contrast,
    fill_defect,
    load_summary,
    rms_contrast,
)
from synthetic_btad.cli import main
from synthetic_btad.contrast import contrast_stats, format_contrast

TINY = {"size": 32, "n_train": 2, "n_test_per_category": 4}


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_zero_when_the_fill_restores_the_original_colours() -> None:
    clean = np.zeros((4, 4, 3), np.uint8)
    clean[...] = (200, 10, 10)
    clean[1:3, 1:3] = (17, 99, 230)  # a flat region: its mean colour is its own colour
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    defect, colour = fill_defect(clean, mask)
    assert colour.tolist() == [17, 99, 230] and np.array_equal(defect, clean)
    assert rms_contrast(defect, clean, mask) == 0.0


def test_hand_computed_examples() -> None:
    clean = np.zeros((2, 3, 3), np.uint8)
    clean[0, 0] = (10, 20, 30)
    clean[1, 2] = (30, 40, 50)
    mask = np.zeros((2, 3), bool)
    mask[0, 0] = mask[1, 2] = True
    defect, colour = fill_defect(clean, mask)
    assert colour.tolist() == [20, 30, 40]  # every masked value moves by exactly 10
    assert rms_contrast(defect, clean, mask) == pytest.approx(10 / 255, abs=1e-15)
    # Black and white under the mask: C = rint(127.5) = 128 (ties to even), errors +128 / -127.
    clean = np.zeros((1, 2, 3), np.uint8)
    clean[0, 1] = 255
    mask = np.ones((1, 2), bool)
    defect, colour = fill_defect(clean, mask)
    assert colour.tolist() == [128, 128, 128]
    expected = math.sqrt((128**2 + 127**2) / 2) / 255
    assert rms_contrast(defect, clean, mask) == pytest.approx(expected, abs=1e-15)
    # Pixels outside the mask do not count.
    defect[0, 0] = 0
    defect[0, 1] = 255
    assert rms_contrast(defect, clean, np.array([[False, True]])) == 0.0


def test_bad_input() -> None:
    x = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(MaskError, match="empty"):
        rms_contrast(x, x, np.zeros((2, 2), bool))
    with pytest.raises(MaskError, match="same HxWxC shape"):
        rms_contrast(x, x[:1], np.ones((2, 2), bool))
    with pytest.raises(MaskError, match="boolean"):
        rms_contrast(x, x, np.ones((2, 2), np.uint8))


def test_stats() -> None:
    s = contrast_stats([0.4, 0.1, 0.3, 0.2, 0.5])
    assert s == {"n": 5, "min": 0.1, "q1": 0.2, "median": 0.3, "q3": 0.4, "max": 0.5}
    assert contrast_stats([]) == {"n": 0}
    dc = DefectContrast(per_image={"crack": {"a": 0.1, "b": 0.3}, "scratch": {"c": 0.2}})
    assert dc.per_category["crack"]["median"] == 0.2 and dc.overall["n"] == 3
    assert dc.overall["median"] == 0.2


def test_flat_bases_give_zero_contrast_in_a_build(tmp_path: Path) -> None:
    root = make_btad_root(tmp_path / "btad", 6, size=16)
    for i, p in enumerate(sorted((root / "03" / "train" / "ok").iterdir())):
        Image.new("RGB", (16, 16), (40 * i, 90, 200 - 10 * i)).save(p)
    s = build_dataset(tmp_path / "o", btad_root=root, size=16, n_train=2, n_test_per_category=4)
    assert {r["contrast"] for r in _rows(tmp_path / "o") if r["mask_file"]} == {"0.000000"}
    assert s.contrast is not None and s.contrast["overall"]["median"] == 0.0
    assert s.contrast["overall"]["n"] == 16 and s.contrast["per_category"]["crack"]["max"] == 0.0


def test_manifest_summary_and_read_back_agree(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    s = build_dataset(out, seed=7, **TINY)
    rows = [r for r in _rows(out) if r["mask_file"]]
    assert len(rows) == 16
    for r in rows:
        defect = np.asarray(Image.open(out / r["file"]))
        clean = np.asarray(Image.open(out / "test" / "good" / Path(r["file"]).name))
        mask = np.asarray(Image.open(out / r["mask_file"])) > 0
        assert float(r["contrast"]) == pytest.approx(rms_contrast(defect, clean, mask), abs=5e-7)
        assert float(r["contrast"]) > 0  # the stand-in texture is never flat under a mask
    dc = defect_contrast(out)
    assert list(dc.per_image) == s.categories
    assert dc.per_image["crack"]["test/crack/0002.png"] == float(rows[2]["contrast"])
    assert dc.to_dict() == s.contrast == load_summary(out).contrast
    assert set(s.contrast["per_category"]["scratch"]) == {"n", "min", "q1", "median", "q3", "max"}
    assert s.contrast["overall"]["n"] == 16

    # A dataset written before the column existed: recomputed from the clean twins on disk.
    with (out / "manifest.csv").open(newline="") as fh:
        old = [{k: v for k, v in r.items() if k != "contrast"} for r in csv.DictReader(fh)]
    with (out / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(old[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(old)
    assert defect_contrast(out).per_image == dc.per_image


def test_without_clean_twins_the_contrast_is_still_stored(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    s = build_dataset(out, include_test_good=False, **TINY)
    assert not (out / "test" / "good").exists()
    assert defect_contrast(out).to_dict() == s.contrast and s.contrast["overall"]["n"] == 16
    text = (out / "manifest.csv").read_text().replace(",contrast,", ",old,")
    (out / "manifest.csv").write_text(text)
    with pytest.raises(ValueError, match="no clean twins"):
        defect_contrast(out)


def test_cli_prints_the_contrast(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--out", str(tmp_path / "ds"), "--size", "32", "--n-train", "2",
            "--n-test-per-category", "4", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    overall = load_summary(tmp_path / "ds").contrast["overall"]
    assert "bases: generated product-03-like stand-in" in out
    assert "defect contrast (in-mask RMS difference to the clean twin" in out
    assert f"overall     median {overall['median']:.4f}" in out and "(n 16)" in out
    lines = format_contrast(load_summary(tmp_path / "ds").contrast).splitlines()
    assert [line.split()[0] for line in lines] == [*CATEGORIES, "overall"]
    assert "\n".join(lines) in out  # the summary read back prints as the CLI did
