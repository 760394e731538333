"""The parameters of a synthetic BTAD build, declared once: ``build_dataset``, the
``synthetic-btad`` command, the anomalib datamodule and the benchmark config's ``build:`` section
all take their names, defaults, help and checks from ``BuildParams``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthetic_btad.bases import BASE_SOURCES
from synthetic_btad.masks import CATEGORIES, GroupingRules

FILLS = ("mean", "random")


def _param(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass(frozen=True)
class BuildParams:
    """What a dataset is a function of (with the seed: same parameters, same bytes)."""

    bases: str | None = _param(
        None,
        "defect-free base images: 'standin' (generated), 'btad' (BTAD from btad_root) or 'elpv' "
        "(920 defect-free polycrystalline ELPV solar cells, CC BY-NC-SA 4.0; needs `pip install "
        "elpv-dataset`); default: btad when btad_root is given, else standin",
    )
    btad_root: Path | str | None = _param(  # noqa: RUF009 - ruff misreads the Path default
        None, "BTAD root (<root>/03/train/ok/*.bmp)"
    )
    mvtec_root: Path | str | None = _param(  # noqa: RUF009 - ruff misreads the Path default
        None,
        "MVTec AD root (<root>/<cat>/ground_truth/<defect>/*.png); "
        "default: generated stand-in masks",
    )
    size: int = _param(128, "image side in pixels")
    seed: int = _param(0, "master random seed")
    n_train: int | None = _param(
        None, "training images (default 900; 90% of a BTAD pool under 1000; 820 for elpv)"
    )
    n_test_per_category: int | None = _param(
        None, "defect bases = test images per category (default 100; 10% of a BTAD pool under 1000)"
    )
    categories: tuple[str, ...] = _param(CATEGORIES, "defect categories to write")
    include_test_good: bool = _param(True, "write the clean bases to test/good")
    grouping_rules: Mapping[str, Sequence[str]] | None = _param(
        None, "name rules {category: [glob, ...]} for MVTec masks, first match wins"
    )
    large_area_threshold: int = _param(
        400, "masks above this area (at the reference size) are mixed_large"
    )
    area_reference_size: int = _param(128, "resolution at which the area rule is applied")
    btad_product: str = _param("03", "BTAD product folder")
    btad_use_test_ok: bool = _param(False, "also use <product>/test/ok as bases")
    fill: str = _param(
        "mean", "defect colour: 'mean' (the region's mean, the paper) or 'random' (loud defects)"
    )

    def __post_init__(self) -> None:
        size, seed = self.size, self.seed
        if not isinstance(size, int) or not 8 <= size <= 4096:
            raise ValueError(f"size must be an integer in [8, 4096], got {size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {self.fill!r}")
        categories = list(self.categories)
        bad = [c for c in categories if c not in CATEGORIES]
        if bad or not categories or len(set(categories)) != len(categories):
            raise ValueError(
                f"categories must be distinct values from {CATEGORIES}, got {categories}"
            )
        # canonical order: a dataset does not depend on the order categories were listed in
        object.__setattr__(self, "categories", tuple(c for c in CATEGORIES if c in categories))
        bases = self.source
        if bases not in BASE_SOURCES:
            raise ValueError(f"bases must be one of {BASE_SOURCES}, got {bases!r}")
        if bases == "btad" and self.btad_root is None:
            raise ValueError("bases='btad' needs btad_root (--btad-root)")
        if bases != "btad" and self.btad_root is not None:
            raise ValueError(f"btad_root is only used with bases='btad', not bases={bases!r}")

    @property
    def source(self) -> str:
        """The base source, with the default resolved (btad with a BTAD root, else standin)."""
        if self.bases is None:
            return "btad" if self.btad_root is not None else "standin"
        return self.bases

    @property
    def rules(self) -> GroupingRules:
        """How MVTec masks are sorted into the categories."""
        names = self.grouping_rules
        return GroupingRules(
            name_rules=dict(names) if names is not None else GroupingRules().name_rules,
            large_area_threshold=self.large_area_threshold,
            reference_size=self.area_reference_size,
        )

    @classmethod
    def describe(cls) -> dict[str, str]:
        """name -> help of every parameter (for configs and the command line)."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}

    @classmethod
    def default(cls, name: str) -> Any:
        return {f.name: f.default for f in dataclasses.fields(cls)}[name]
