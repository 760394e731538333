"""The summary of a dataset: written last by a build (its presence marks a complete dataset),
read back by the datamodule, the benchmark and the contrast report."""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL

from synthetic_btad._version import __version__
from synthetic_btad.bases import ELPV_LICENSE, ELPV_PACKAGE
from synthetic_btad.contrast import DefectContrast, rms_contrast, stored_value
from synthetic_btad.io import read_mask, read_rgb
from synthetic_btad.layout import FORMAT, MANIFEST_FILE, MASK_SUFFIX, STAND_IN, SUMMARY_FILE
from synthetic_btad.masks import CATEGORIES, MaskLibrary
from synthetic_btad.params import BuildParams
from synthetic_btad.plan import BasePlan
from synthetic_btad.procedural import PROCEDURAL_FAMILIES
from synthetic_btad.writer import Rows


@dataclass(frozen=True)
class Summary:
    """What was built: the parsed ``summary.json`` of a dataset plus its location."""

    root: Path
    data: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return self.data["counts"]

    @property
    def categories(self) -> list[str]:
        return self.data["parameters"]["categories"]

    @property
    def stand_ins(self) -> dict[str, bool]:
        return self.data["stand_ins"]

    @property
    def layout(self) -> dict[str, Any]:
        return self.data["layout"]

    @property
    def contrast(self) -> dict[str, Any] | None:
        """In-mask defect contrast statistics (None for datasets built before it existed)."""
        return self.data.get("contrast")


def load_summary(root: Path | str) -> Summary:
    """Read a built dataset's summary; raises FileNotFoundError if ``root`` is not one."""
    root = Path(root)
    data = json.loads((root / SUMMARY_FILE).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{root / SUMMARY_FILE} is not a {FORMAT} summary")
    return Summary(root=root, data=data)


def defect_contrast(root: Path | str) -> DefectContrast:
    """Per-image defect contrast of a built dataset (see :mod:`synthetic_btad.contrast`).

    Read from ``manifest.csv``'s ``contrast`` column. For a dataset written before that column
    existed, it is recomputed from the defect images, their masks and their clean twins in
    ``test/good``; without those twins (built with ``include_test_good=False``) it cannot be and
    a ``ValueError`` says so.
    """
    summary = load_summary(root)
    with (summary.root / MANIFEST_FILE).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        stored = "contrast" in (reader.fieldnames or [])
        rows = [r for r in reader if r["mask_file"]]
    per_image: dict[str, dict[str, float]] = {c: {} for c in summary.categories}
    twins = summary.layout.get("normal_test_dir")
    for r in rows:
        if stored:
            value = float(r["contrast"])
        else:
            if not twins:
                raise ValueError(
                    f"{summary.root} has no contrast column in {MANIFEST_FILE} and no clean twins "
                    "(built without test/good): rebuild it to get the defect contrast"
                )
            rel = Path(r["file"])
            value = stored_value(
                rms_contrast(
                    np.asarray(read_rgb(summary.root / rel)),
                    np.asarray(read_rgb(summary.root / twins / rel.name)),
                    read_mask(summary.root / r["mask_file"]),
                )
            )
        per_image.setdefault(r["category"], {})[r["file"]] = value
    return DefectContrast(per_image=per_image)


def is_dataset(root: Path | str) -> bool:
    """True if ``root`` holds a complete dataset (the summary is the last thing written)."""
    try:
        load_summary(root)
    except (OSError, ValueError):
        return False
    return True


def _stats(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": int(min(values)),
        "median": float(statistics.median(values)),
        "mean": round(float(statistics.fmean(values)), 3),
        "max": int(max(values)),
    }


def _mask_library_info(lib: MaskLibrary) -> dict[str, Any]:
    per_cat = {}
    for cat in CATEGORIES:
        recs = lib.by_category[cat]
        per_cat[cat] = {
            "n_masks": len(recs),
            "defect_types": dict(
                sorted(Counter(f"{r.mvtec_category}/{r.defect_type}" for r in recs).items())
            ),
            "area_ref": _stats([r.area_ref for r in recs]),
            "area_out": _stats([r.area_out for r in recs]),
        }
    return {"per_category": per_cat, "skipped": lib.skipped}


def _parameters(p: BuildParams, n_train: int, n_bases: int) -> dict[str, Any]:
    def resolved(root: Path | str | None) -> str | None:
        return None if root is None else str(Path(root).resolve())

    return {
        "bases": p.source,
        "size": p.size,
        "seed": p.seed,
        "n_train": n_train,
        "n_test_per_category": n_bases,
        "categories": list(p.categories),
        "include_test_good": p.include_test_good,
        "btad_root": resolved(p.btad_root),
        "btad_product": p.btad_product,
        "btad_use_test_ok": p.btad_use_test_ok,
        "mvtec_root": resolved(p.mvtec_root),
        "grouping": p.rules.to_dict(),
    }


def _sources(p: BuildParams, plan: BasePlan, library: MaskLibrary | None) -> dict[str, Any]:
    bases = p.source
    elpv = {
        "package": f"{ELPV_PACKAGE} {plan.elpv_version}",
        "license": ELPV_LICENSE,
        "pool": "cells with defect probability 0 and type poly, sorted by file name; grey "
        "replicated to RGB",
    }
    return {
        "bases": {
            "kind": STAND_IN if bases == "standin" else bases,
            "label": plan.label,
            "pool_size": plan.pool_size,
            "count_rule": plan.count_rule,
            "selection": (
                "random permutation (seed stream 'split'): first n_test_per_category "
                "are defect bases, the next n_train are training images"
                if bases != "standin"
                else "procedural machined-metal texture, one seed per image"
            ),
            **(elpv if bases == "elpv" else {}),
        },
        "masks": (
            {"kind": "mvtec", **_mask_library_info(library)}
            if library is not None
            else {"kind": STAND_IN, "families": PROCEDURAL_FAMILIES}
        ),
        "fill": (
            "x_sys = (1 - M) * x + M * C, C = per-channel mean of x over M, rounded"
            if p.fill == "mean"
            else "x_sys = (1 - M) * x + M * C, C = uniform random RGB per defect"
        ),
    }


def summary_data(
    p: BuildParams, plan: BasePlan, library: MaskLibrary | None, rows: Rows, notices: list[str]
) -> dict[str, Any]:
    cats = p.categories
    by_cat = rows.by_category
    return {
        "format": FORMAT,
        "generator": {
            "package": "synthetic_btad",
            "version": __version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "parameters": _parameters(p, plan.n_train, plan.n_bases),
        "stand_ins": {"bases": p.source == "standin", "masks": library is None},
        "sources": _sources(p, plan, library),
        "counts": {
            "train/good": len(rows.train),
            "test/good": len(rows.good),
            **{f"test/{c}": len(by_cat[c]) for c in cats},
            "total_images": len(rows.all()),
        },
        "areas": {
            c: {
                "area": _stats([r["area"] for r in by_cat[c]]),
                "area_ref": _stats([r["area_ref"] for r in by_cat[c]]),
            }
            for c in cats
        },
        "contrast": DefectContrast(
            per_image={c: {r["file"]: float(r["contrast"]) for r in by_cat[c]} for c in by_cat}
        ).to_dict(),
        "layout": {
            "normal_dir": "train/good",
            "normal_test_dir": "test/good" if p.include_test_good else None,
            "abnormal_dirs": {c: f"test/{c}" for c in cats},
            "mask_dirs": {c: f"ground_truth/{c}" for c in cats},
            "mask_name": f"<image stem>{MASK_SUFFIX}.png",
            "manifest": MANIFEST_FILE,
        },
        "notices": notices,
    }
