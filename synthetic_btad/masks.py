"""Real defect masks from an MVTec AD root, grouped into the paper's four categories.

Grouping (documented in docs/synthetic_btad.md):

1. Area rule first. A mask whose foreground, after a nearest-neighbour resize of the whole mask to
   ``reference_size`` x ``reference_size`` pixels, covers more than ``large_area_threshold`` pixels
   is ``mixed_large`` whatever its defect type (the paper: "defective region area larger than 400
   pixels"). The reference resolution is fixed (default 128) so the grouping does not change with
   the output ``--size``.
2. Otherwise name rules, in order, first match wins: glob patterns matched against the defect type
   (``crack``) or, when a pattern contains ``/``, against ``<category>/<defect>``
   (``screw/thread_side``).
3. Otherwise ``default_category`` (``irregular``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from synthetic_btad.errors import LayoutError, MaskError
from synthetic_btad.io import IMAGE_EXTENSIONS, image_size, list_images, read_mask

CATEGORIES: tuple[str, ...] = ("crack", "irregular", "scratch", "mixed_large")
LARGE_CATEGORY = "mixed_large"
SMALL_CATEGORIES: tuple[str, ...] = ("crack", "irregular", "scratch")

# Ordered: the first rule whose pattern matches decides. Zipper teeth defects and screw thread
# defects are listed under "irregular" first because their names contain "broken"/"split"/"thread"
# but their regions are compact damage, not thin lines.
DEFAULT_NAME_RULES: dict[str, tuple[str, ...]] = {
    "irregular": ("zipper/*_teeth", "screw/thread_*"),
    "crack": ("*crack*", "*broken*"),
    "scratch": ("*scratch*", "*thread*", "*cut*", "*stroke*"),
}

MVTEC_LAYOUT = "<root>/<category>/ground_truth/<defect_type>/<NNN>_mask.png"


@dataclass(frozen=True)
class GroupingRules:
    """How MVTec defect masks are sorted into crack / irregular / scratch / mixed_large."""

    name_rules: Mapping[str, Sequence[str]] = field(
        default_factory=lambda: dict(DEFAULT_NAME_RULES)
    )
    default_category: str = "irregular"
    large_area_threshold: int = 400
    reference_size: int = 128

    def __post_init__(self) -> None:
        for cat in (*self.name_rules, self.default_category):
            if cat not in SMALL_CATEGORIES:
                raise ValueError(
                    f"grouping rule target {cat!r} is not one of {SMALL_CATEGORIES}; "
                    f"{LARGE_CATEGORY!r} is decided by the area rule only"
                )
        for cat, patterns in self.name_rules.items():
            if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"grouping rule {cat!r} must be a list of glob strings")
        if self.large_area_threshold < 0 or self.reference_size < 8:
            raise ValueError("large_area_threshold must be >= 0 and reference_size >= 8")

    def small_category(self, mvtec_category: str, defect_type: str) -> str:
        """Category for a mask at or below the area threshold, from its names alone."""
        name = defect_type.lower()
        qualified = f"{mvtec_category.lower()}/{name}"
        for cat, patterns in self.name_rules.items():
            for pattern in patterns:
                target = qualified if "/" in pattern else name
                if fnmatch.fnmatchcase(target, pattern.lower()):
                    return cat
        return self.default_category

    def category(self, mvtec_category: str, defect_type: str, area_ref: int) -> str:
        """Category of a mask: area rule first, then name rules, then the default."""
        if area_ref > self.large_area_threshold:
            return LARGE_CATEGORY
        return self.small_category(mvtec_category, defect_type)

    def to_dict(self) -> dict:
        return {
            "name_rules": {k: list(v) for k, v in self.name_rules.items()},
            "default_category": self.default_category,
            "large_category": LARGE_CATEGORY,
            "large_area_threshold": self.large_area_threshold,
            "reference_size": self.reference_size,
            "area_rule": (
                f"area > {self.large_area_threshold} px after nearest-neighbour resize of the mask "
                f"to {self.reference_size}x{self.reference_size} => {LARGE_CATEGORY}"
            ),
        }


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``size`` x ``size`` (stays binary)."""
    if mask.shape == (size, size):
        return mask.copy()
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((size, size), Image.Resampling.NEAREST)) > 0


@dataclass
class MaskRecord:
    """One real mask: where it came from, its areas and its pixels at the output size."""

    source: str  # path relative to the MVTec root, e.g. "hazelnut/ground_truth/crack/000_mask.png"
    mvtec_category: str
    defect_type: str
    native_size: tuple[int, int]  # (width, height)
    area_native: int
    area_ref: int
    area_out: int
    category: str
    _bits: np.ndarray = field(repr=False)
    _size: int = field(repr=False)

    @property
    def mask(self) -> np.ndarray:
        """Boolean mask at the output size (stored bit-packed to keep big libraries small)."""
        n = self._size * self._size
        return np.unpackbits(self._bits, count=n).astype(bool).reshape(self._size, self._size)


@dataclass
class MaskLibrary:
    """All usable masks of a root, by category, plus what was skipped and why."""

    root: Path
    by_category: dict[str, list[MaskRecord]]
    skipped: list[dict]

    def counts(self) -> dict[str, int]:
        return {cat: len(self.by_category.get(cat, [])) for cat in CATEGORIES}


def _mvtec_categories(root: Path) -> list[tuple[str, Path, str]]:
    """(category name, category dir, prefix for relative paths) for a root or a category dir."""
    if not root.exists():
        raise LayoutError(f"MVTec AD root {root} does not exist; expected {MVTEC_LAYOUT}")
    if not root.is_dir():
        raise LayoutError(f"MVTec AD root {root} is not a directory; expected {MVTEC_LAYOUT}")
    if (root / "ground_truth").is_dir():
        # A single category folder was given (e.g. .../mvtec_anomaly_detection/hazelnut).
        return [(root.name, root, root.name + "/")]
    cats = [
        (d.name, d, d.name + "/")
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / "ground_truth").is_dir()
    ]
    if not cats:
        found = sorted(p.name for p in root.iterdir())[:8]
        raise LayoutError(
            f"MVTec AD root {root} has no <category>/ground_truth folder; expected {MVTEC_LAYOUT} "
            f"(found: {found or 'an empty directory'})"
        )
    return cats


def _matching_image(cat_dir: Path, defect: str, mask_path: Path) -> Path | None:
    stem = mask_path.stem.removesuffix("_mask")
    for ext in IMAGE_EXTENSIONS:
        candidate = cat_dir / "test" / defect / (stem + ext)
        if candidate.is_file():
            return candidate
    return None


def load_mvtec_masks(root: Path | str, rules: GroupingRules, size: int) -> MaskLibrary:
    """Read and group every defect mask under an MVTec AD root.

    Each mask is binarised robustly, checked against its test image's size when that image is
    present, resized (nearest) to the reference resolution for the area rule and to ``size`` for
    use. Masks that are empty, or become empty at ``size``, are skipped and reported.
    """
    root = Path(root)
    by_cat: dict[str, list[MaskRecord]] = {c: [] for c in CATEGORIES}
    skipped: list[dict] = []
    n_files = 0
    for cat_name, cat_dir, prefix in _mvtec_categories(root):
        gt = cat_dir / "ground_truth"
        for defect_dir in sorted(d for d in gt.iterdir() if d.is_dir()):
            defect = defect_dir.name
            if defect == "good":
                continue
            for mask_path in list_images(defect_dir):
                n_files += 1
                rel = prefix + mask_path.relative_to(cat_dir).as_posix()
                mask = read_mask(mask_path)
                height, width = mask.shape
                image_path = _matching_image(cat_dir, defect, mask_path)
                if image_path is not None:
                    img_size = image_size(image_path)
                    if img_size != (width, height):
                        raise MaskError(
                            f"mask {mask_path} is {width}x{height} but its image {image_path} is "
                            f"{img_size[0]}x{img_size[1]}; a mask must have its image's size"
                        )
                area_native = int(mask.sum())
                if area_native == 0:
                    skipped.append({"source": rel, "reason": "empty mask"})
                    continue
                area_ref = int(resize_mask(mask, rules.reference_size).sum())
                out = resize_mask(mask, size)
                area_out = int(out.sum())
                if area_out == 0:
                    skipped.append({"source": rel, "reason": f"empty after resize to {size}px"})
                    continue
                category = rules.category(cat_name, defect, area_ref)
                by_cat[category].append(
                    MaskRecord(
                        source=rel,
                        mvtec_category=cat_name,
                        defect_type=defect,
                        native_size=(width, height),
                        area_native=area_native,
                        area_ref=area_ref,
                        area_out=area_out,
                        category=category,
                        _bits=np.packbits(out.ravel()),
                        _size=size,
                    )
                )
    if n_files == 0:
        raise LayoutError(f"MVTec AD root {root} contains no mask files; expected {MVTEC_LAYOUT}")
    return MaskLibrary(root=root, by_category=by_cat, skipped=skipped)
