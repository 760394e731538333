"""Writes the images, masks and manifest of one build into its temporary directory."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthetic_btad.bases import generate_base, load_base
from synthetic_btad.contrast import rms_contrast, stored_value
from synthetic_btad.fill import fill_defect
from synthetic_btad.io import write_png
from synthetic_btad.layout import (
    _CAT_INDEX,
    _EMPTY_ROW,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    MASK_SUFFIX,
    STAND_IN,
    derive_seed,
)
from synthetic_btad.masks import MaskLibrary
from synthetic_btad.params import BuildParams
from synthetic_btad.plan import BasePlan
from synthetic_btad.procedural import generate_mask

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Rows:
    """Manifest rows as they are written."""

    train: list[dict] = field(default_factory=list)
    good: list[dict] = field(default_factory=list)
    by_category: dict[str, list[dict]] = field(default_factory=dict)

    def all(self) -> list[dict]:
        return self.train + self.good + [r for rows in self.by_category.values() for r in rows]


class Writer:
    """Writes the images of one build into ``tmp`` and keeps the manifest rows and progress."""

    def __init__(self, tmp: Path, p: BuildParams, plan: BasePlan, progress: Progress | None):
        self.tmp, self.p, self.plan, self.progress = tmp, p, plan, progress
        self.rows = Rows(by_category={c: [] for c in p.categories})
        self.digits = max(4, len(str(max(plan.n_train, plan.n_bases) - 1)))
        n_good = plan.n_bases if p.include_test_good else 0
        self.total = plan.n_train + n_good + plan.n_bases * len(p.categories)
        self.done = 0

    def name(self, i: int) -> str:
        return f"{i:0{self.digits}d}"

    def tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    def base_image(self, split: str, i: int) -> tuple[np.ndarray, str, str, int]:
        """(pixels, kind, source, seed) of train image i or defect base i."""
        p, plan = self.p, self.plan
        src = plan.train_src if split == "train" else plan.base_src
        if src:
            path = src[i]
            source = path.relative_to(plan.src_root).as_posix()  # type: ignore[arg-type]
            # Real bases were picked by the split permutation: record that step's seed.
            return load_base(path, p.size), p.source, source, derive_seed(p.seed, "split")
        s = derive_seed(p.seed, split, i)
        pixels = generate_base(np.random.default_rng(s), p.size)
        return pixels, STAND_IN, f"generated:{split}:{i}", s

    def make_dirs(self) -> None:
        (self.tmp / "train" / "good").mkdir(parents=True)
        if self.p.include_test_good:
            (self.tmp / "test" / "good").mkdir(parents=True)
        for cat in self.p.categories:
            (self.tmp / "test" / cat).mkdir(parents=True)
            (self.tmp / "ground_truth" / cat).mkdir(parents=True)

    def write_train(self) -> None:
        for i in range(self.plan.n_train):
            x, kind, source, s = self.base_image("train", i)
            rel = f"train/good/{self.name(i)}.png"
            write_png(self.tmp / rel, x)
            self.rows.train.append(
                {**_EMPTY_ROW, "file": rel, "split": "train", "category": "good",
                 "base_kind": kind, "base_source": source, "seed": s}
            )  # fmt: skip
            self.tick()

    def write_tests(self, library: MaskLibrary | None) -> None:
        for i in range(self.plan.n_bases):
            x, kind, source, s = self.base_image("base", i)
            base_row = {**_EMPTY_ROW, "split": "test", "base_kind": kind, "base_source": source}
            if self.p.include_test_good:
                rel = f"test/good/{self.name(i)}.png"
                write_png(self.tmp / rel, x)
                self.rows.good.append({**base_row, "file": rel, "category": "good", "seed": s})
                self.tick()
            for cat in self.p.categories:
                self.write_defect(x, i, cat, base_row, library)
                self.tick()

    def write_defect(
        self, x: np.ndarray, i: int, cat: str, base_row: dict, library: MaskLibrary | None
    ) -> None:
        """Base ``i`` with a mask of ``cat`` drawn for it, filled, and its ground truth."""
        s = derive_seed(self.p.seed, "defect", _CAT_INDEX[cat], i)
        rng = np.random.default_rng(s)
        if library is not None:
            masks = library.by_category[cat]
            rec = masks[int(rng.integers(len(masks)))]
            mask, area_ref = rec.mask, rec.area_ref
            mask_kind, mask_source = "mvtec", rec.source
            defect_type = f"{rec.mvtec_category}/{rec.defect_type}"
        else:
            gen = generate_mask(cat, rng, self.p.size, self.p.rules)
            mask, area_ref = gen.mask, gen.area_ref
            mask_kind, mask_source, defect_type = STAND_IN, f"generated:{cat}", cat
        # Drawn after the mask, so both fills share the same masks.
        paint = rng.integers(0, 256, 3, dtype=np.uint8) if self.p.fill == "random" else None
        x_sys, colour = fill_defect(x, mask, paint)
        contrast = stored_value(rms_contrast(x_sys, x, mask))
        rel = f"test/{cat}/{self.name(i)}.png"
        rel_mask = f"ground_truth/{cat}/{self.name(i)}{MASK_SUFFIX}.png"
        write_png(self.tmp / rel, x_sys)
        write_png(self.tmp / rel_mask, mask.astype(np.uint8) * 255)
        self.rows.by_category[cat].append(
            {**base_row, "file": rel, "category": cat, "mask_file": rel_mask,
             "mask_kind": mask_kind, "mask_source": mask_source,
             "defect_type": defect_type, "area": int(mask.sum()), "area_ref": area_ref,
             "fill_r": int(colour[0]), "fill_g": int(colour[1]), "fill_b": int(colour[2]),
             "contrast": f"{contrast:.6f}", "seed": s}
        )  # fmt: skip

    def write_manifest(self) -> None:
        with (self.tmp / MANIFEST_FILE).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows.all())
