"""The plan of a build: where its base images and masks come from, checked before writing.

``build`` makes the plan; ``writer`` writes what it names and ``summary`` records it. Keeping it
in its own module lets those three import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthetic_btad.bases import (
    ELPV_LABEL,
    ELPV_LICENSE,
    ELPV_PACKAGE,
    btad_pool,
    elpv_pool,
    resolve_counts,
)
from synthetic_btad.errors import NotEnoughDataError
from synthetic_btad.layout import STAND_IN, derive_seed
from synthetic_btad.masks import MaskLibrary, load_mvtec_masks
from synthetic_btad.params import BuildParams

Notice = Callable[[str], None]


@dataclass
class BasePlan:
    """Where the base images come from and how many of each kind are written."""

    label: str
    pool_size: int | None
    count_rule: str
    n_train: int
    n_bases: int
    train_src: list[Path]  # real training images (empty: generated)
    base_src: list[Path]  # real defect bases (empty: generated)
    src_root: Path | None = None
    elpv_version: str | None = None


def plan_bases(p: BuildParams, note: Notice) -> BasePlan:
    """Validate the base source and the counts before anything is written."""
    bases = p.source
    if bases == "standin":
        n_train, n_bases, rule = resolve_counts(None, p.n_train, p.n_test_per_category)
        note(
            "no BTAD root given: using generated product-03-like stand-in base images "
            f"(labelled '{STAND_IN}' in manifest and summary)"
        )
        label = "generated product-03-like stand-in (procedural machined metal)"
        return BasePlan(label, None, rule, n_train, n_bases, [], [])
    elpv_version = None
    if bases == "btad":
        src_root = Path(p.btad_root)  # type: ignore[arg-type]
        pool = btad_pool(src_root, p.btad_product, p.btad_use_test_ok)
        label = f"BTAD product {p.btad_product}"
    else:
        elpv = elpv_pool()
        pool, src_root, elpv_version = elpv.paths, elpv.data_dir, elpv.version
        label = ELPV_LABEL
        note(
            f"using ELPV base images: {len(pool)} defect-free polycrystalline solar cells "
            f"from {ELPV_PACKAGE} {elpv_version} ({ELPV_LICENSE}: non-commercial use only; "
            "labelled 'elpv' in manifest and summary)"
        )
    n_train, n_bases, rule = resolve_counts(
        len(pool), p.n_train, p.n_test_per_category, keep_paper_test=bases == "elpv"
    )
    # The paper draws the defect bases at random; the rest (up to n_train) is for training.
    perm = np.random.default_rng(derive_seed(p.seed, "split")).permutation(len(pool))
    base_src = [pool[k] for k in sorted(int(k) for k in perm[:n_bases])]
    train_src = [pool[k] for k in sorted(int(k) for k in perm[n_bases : n_bases + n_train])]
    if rule.startswith("only"):
        note(f"{bases.upper()}: {rule}: {n_train} train, {n_bases} defect bases")
    return BasePlan(label, len(pool), rule, n_train, n_bases, train_src, base_src, src_root,
                    elpv_version)  # fmt: skip


def plan_masks(p: BuildParams, note: Notice) -> MaskLibrary | None:
    """The MVTec masks sorted into categories (None: generated stand-in masks)."""
    if p.mvtec_root is None:
        note(
            "no MVTec AD root given: using generated stand-in defect masks "
            f"(labelled '{STAND_IN}' in manifest and summary)"
        )
        return None
    rules = p.rules
    library = load_mvtec_masks(Path(p.mvtec_root), rules, p.size)
    empty = [c for c in p.categories if not library.by_category[c]]
    if empty:
        raise NotEnoughDataError(
            f"no masks in categor{'y' if len(empty) == 1 else 'ies'} {empty} after grouping "
            f"the masks of {p.mvtec_root} (per category: {library.counts()}; "
            f"rules: {rules.to_dict()['area_rule']}, name rules {dict(rules.name_rules)}); "
            "adjust the grouping rules or the categories"
        )
    return library
