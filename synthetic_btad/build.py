"""Build a synthetic BTAD dataset (paper Appendix F) atomically into an anomalib Folder layout."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL

from synthetic_btad._version import __version__
from synthetic_btad.bases import (
    BASE_SOURCES,
    ELPV_LABEL,
    ELPV_LICENSE,
    ELPV_PACKAGE,
    btad_pool,
    elpv_pool,
    generate_base,
    load_base,
    resolve_counts,
)
from synthetic_btad.contrast import DefectContrast, rms_contrast, stored_value
from synthetic_btad.errors import NotEnoughDataError, OutputExistsError
from synthetic_btad.fill import fill_defect
from synthetic_btad.io import read_mask, read_rgb, write_png
from synthetic_btad.masks import CATEGORIES, GroupingRules, MaskLibrary, load_mvtec_masks
from synthetic_btad.procedural import PROCEDURAL_FAMILIES, generate_mask

FORMAT = "synthetic_btad/1"
FILLS = ("mean", "random")
SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "manifest.csv"
MASK_SUFFIX = "_mask"
STAND_IN = "generated_stand_in"
MANIFEST_COLUMNS = (
    "file", "split", "category", "base_kind", "base_source", "mask_file", "mask_kind",
    "mask_source", "defect_type", "area", "area_ref", "fill_r", "fill_g", "fill_b", "contrast",
    "seed",
)  # fmt: skip

# Fixed stream ids: a category's images do not change when other categories are left out.
_STREAMS = {"split": 1, "train": 2, "base": 3, "defect": 4}
_CAT_INDEX = {cat: i for i, cat in enumerate(CATEGORIES)}

Progress = Callable[[int, int], None]  # (done, total)
Notice = Callable[[str], None]


def derive_seed(seed: int, stream: str, *index: int) -> int:
    """Independent 32-bit seed for one random step, from the master seed and its position."""
    seq = np.random.SeedSequence([seed, _STREAMS[stream], *index])
    return int(seq.generate_state(1, dtype=np.uint32)[0])


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


def _check_output(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True (--overwrite)")
    if not is_dataset(out):
        # --overwrite deletes the old directory: only ever do that to our own output.
        raise OutputExistsError(
            f"refusing to overwrite {out}: it is not a synthetic_btad dataset (no valid "
            f"{SUMMARY_FILE}); remove it yourself or choose another --out"
        )


def _publish(tmp: Path, out: Path, overwrite: bool, token: str) -> None:
    """Move the finished temporary tree to ``out`` (rename: never a half-written dataset)."""
    _check_output(out, overwrite)
    old = None
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            old = out.with_name(f"{out.name}.old-{token}")
            out.replace(old)
    tmp.replace(out)
    if old is not None:
        shutil.rmtree(old)


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


def build_dataset(
    out: Path | str,
    *,
    bases: str | None = None,
    btad_root: Path | str | None = None,
    mvtec_root: Path | str | None = None,
    size: int = 128,
    seed: int = 0,
    n_train: int | None = None,
    n_test_per_category: int | None = None,
    categories: Sequence[str] = CATEGORIES,
    include_test_good: bool = True,
    grouping_rules: Mapping[str, Sequence[str]] | None = None,
    large_area_threshold: int = 400,
    area_reference_size: int = 128,
    btad_product: str = "03",
    btad_use_test_ok: bool = False,
    fill: str = "mean",
    overwrite: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> Summary:
    """Write the synthetic BTAD benchmark to ``out`` and return its summary.

    ``bases`` picks the defect-free base images: ``"standin"`` (generated, no data needed),
    ``"btad"`` (BTAD from ``btad_root``) or ``"elpv"`` (the 920 defect-free polycrystalline solar
    cells of the optional ``elpv-dataset`` package, CC BY-NC-SA 4.0). None (the default) means
    ``"btad"`` when ``btad_root`` is given, else ``"standin"``. ``mvtec_root`` set to None uses
    generated stand-in masks. Stand-ins are labelled as such in the manifest and summary, and
    every source is announced through ``notice``. Counts left as None follow the paper (900 train
    images, 100 defect bases = 100 test images per category) when enough images exist; ELPV keeps
    the 100 defect bases and trains on the other 820 cells.
    Each category's i-th test image is defect-filled from base i with a mask drawn for it at random.
    ``fill="mean"`` is the paper's mean-colour fill; ``fill="random"`` paints each defect one
    uniform random colour instead (loud defects, for smoke tests such as the CI guard).
    The result is a function of the arguments only: same arguments and seed => identical bytes.
    Everything is written into a temporary sibling of ``out`` and renamed at the end.
    """
    if not isinstance(size, int) or not 8 <= size <= 4096:
        raise ValueError(f"size must be an integer in [8, 4096], got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    categories = list(categories)
    bad = [c for c in categories if c not in CATEGORIES]
    if bad or not categories or len(set(categories)) != len(categories):
        raise ValueError(f"categories must be distinct values from {CATEGORIES}, got {categories}")
    categories = [c for c in CATEGORIES if c in categories]  # canonical order
    if bases is None:
        bases = "btad" if btad_root is not None else "standin"
    if bases not in BASE_SOURCES:
        raise ValueError(f"bases must be one of {BASE_SOURCES}, got {bases!r}")
    if bases == "btad" and btad_root is None:
        raise ValueError("bases='btad' needs btad_root (--btad-root)")
    if bases != "btad" and btad_root is not None:
        raise ValueError(f"btad_root is only used with bases='btad', not bases={bases!r}")
    rules = GroupingRules(
        name_rules=dict(grouping_rules)
        if grouping_rules is not None
        else GroupingRules().name_rules,
        large_area_threshold=large_area_threshold,
        reference_size=area_reference_size,
    )
    say = notice or (lambda _msg: None)
    notices: list[str] = []

    def note(msg: str) -> None:
        notices.append(msg)
        say(msg)

    out = Path(out)
    _check_output(out, overwrite)

    # --- plan the base images (validates the source and the counts before writing) ---
    elpv_version: str | None = None
    if bases in ("btad", "elpv"):
        if bases == "btad":
            assert btad_root is not None
            btad_root = src_root = Path(btad_root)
            base_pool = btad_pool(btad_root, btad_product, btad_use_test_ok)
            base_label = f"BTAD product {btad_product}"
        else:
            elpv = elpv_pool()
            base_pool, src_root, elpv_version = elpv.paths, elpv.data_dir, elpv.version
            base_label = ELPV_LABEL
            note(
                f"using ELPV base images: {len(base_pool)} defect-free polycrystalline solar cells "
                f"from {ELPV_PACKAGE} {elpv_version} ({ELPV_LICENSE}: non-commercial use only; "
                "labelled 'elpv' in manifest and summary)"
            )
        pool_size: int | None = len(base_pool)
        n_train, n_bases, count_rule = resolve_counts(
            pool_size, n_train, n_test_per_category, keep_paper_test=bases == "elpv"
        )
        # The paper draws the defect bases at random; the rest (up to n_train) is for training.
        perm = np.random.default_rng(derive_seed(seed, "split")).permutation(len(base_pool))
        base_src = [base_pool[k] for k in sorted(int(k) for k in perm[:n_bases])]
        train_src = [
            base_pool[k] for k in sorted(int(k) for k in perm[n_bases : n_bases + n_train])
        ]
        if count_rule.startswith("only"):
            note(f"{bases.upper()}: {count_rule}: {n_train} train, {n_bases} defect bases")
    else:
        base_label = "generated product-03-like stand-in (procedural machined metal)"
        n_train, n_bases, count_rule = resolve_counts(None, n_train, n_test_per_category)
        train_src, base_src, pool_size = [], [], None
        note(
            "no BTAD root given: using generated product-03-like stand-in base images "
            f"(labelled '{STAND_IN}' in manifest and summary)"
        )

    # --- plan the masks ---
    library: MaskLibrary | None = None
    if mvtec_root is not None:
        library = load_mvtec_masks(Path(mvtec_root), rules, size)
        empty = [c for c in categories if not library.by_category[c]]
        if empty:
            raise NotEnoughDataError(
                f"no masks in categor{'y' if len(empty) == 1 else 'ies'} {empty} after grouping "
                f"the masks of {mvtec_root} (per category: {library.counts()}; "
                f"rules: {rules.to_dict()['area_rule']}, name rules {dict(rules.name_rules)}); "
                "adjust the grouping rules or the categories"
            )
    else:
        note(
            "no MVTec AD root given: using generated stand-in defect masks "
            f"(labelled '{STAND_IN}' in manifest and summary)"
        )

    n_good = n_bases if include_test_good else 0
    total = n_train + n_good + n_bases * len(categories)
    digits = max(4, len(str(max(n_train, n_bases) - 1)))

    def name(i: int) -> str:
        return f"{i:0{digits}d}"

    def base_image(split: str, i: int) -> tuple[np.ndarray, str, str, int]:
        """(pixels, kind, source, seed) of train image i or defect base i."""
        src = train_src if split == "train" else base_src
        if src:
            path = src[i]
            source = path.relative_to(src_root).as_posix()
            # Real bases were picked by the split permutation: record that step's seed.
            return load_base(path, size), bases, source, derive_seed(seed, "split")
        s = derive_seed(seed, split, i)
        return generate_base(np.random.default_rng(s), size), STAND_IN, f"generated:{split}:{i}", s

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    token = tmp.name.rsplit("-", 1)[-1]
    rows_train: list[dict] = []
    rows_good: list[dict] = []
    rows_cat: dict[str, list[dict]] = {c: [] for c in categories}
    done = 0
    try:
        (tmp / "train" / "good").mkdir(parents=True)
        if include_test_good:
            (tmp / "test" / "good").mkdir(parents=True)
        for cat in categories:
            (tmp / "test" / cat).mkdir(parents=True)
            (tmp / "ground_truth" / cat).mkdir(parents=True)
        empty_row = dict.fromkeys(MANIFEST_COLUMNS, "")

        for i in range(n_train):
            x, kind, source, s = base_image("train", i)
            rel = f"train/good/{name(i)}.png"
            write_png(tmp / rel, x)
            rows_train.append(
                {**empty_row, "file": rel, "split": "train", "category": "good",
                 "base_kind": kind, "base_source": source, "seed": s}
            )  # fmt: skip
            done += 1
            if progress:
                progress(done, total)

        for i in range(n_bases):
            x, kind, source, s = base_image("base", i)
            base_row = {**empty_row, "split": "test", "base_kind": kind, "base_source": source}
            if include_test_good:
                rel = f"test/good/{name(i)}.png"
                write_png(tmp / rel, x)
                rows_good.append({**base_row, "file": rel, "category": "good", "seed": s})
                done += 1
                if progress:
                    progress(done, total)
            for cat in categories:
                s = derive_seed(seed, "defect", _CAT_INDEX[cat], i)
                rng = np.random.default_rng(s)
                if library is not None:
                    masks = library.by_category[cat]
                    rec = masks[int(rng.integers(len(masks)))]
                    mask, area_ref = rec.mask, rec.area_ref
                    mask_kind, mask_source = "mvtec", rec.source
                    defect_type = f"{rec.mvtec_category}/{rec.defect_type}"
                else:
                    gen = generate_mask(cat, rng, size, rules)
                    mask, area_ref = gen.mask, gen.area_ref
                    mask_kind, mask_source, defect_type = STAND_IN, f"generated:{cat}", cat
                # Drawn after the mask, so both fills share the same masks.
                paint = rng.integers(0, 256, 3, dtype=np.uint8) if fill == "random" else None
                x_sys, colour = fill_defect(x, mask, paint)
                contrast = stored_value(rms_contrast(x_sys, x, mask))
                rel = f"test/{cat}/{name(i)}.png"
                rel_mask = f"ground_truth/{cat}/{name(i)}{MASK_SUFFIX}.png"
                write_png(tmp / rel, x_sys)
                write_png(tmp / rel_mask, mask.astype(np.uint8) * 255)
                rows_cat[cat].append(
                    {**base_row, "file": rel, "category": cat, "mask_file": rel_mask,
                     "mask_kind": mask_kind, "mask_source": mask_source,
                     "defect_type": defect_type, "area": int(mask.sum()), "area_ref": area_ref,
                     "fill_r": int(colour[0]), "fill_g": int(colour[1]), "fill_b": int(colour[2]),
                     "contrast": f"{contrast:.6f}", "seed": s}
                )  # fmt: skip
                done += 1
                if progress:
                    progress(done, total)

        rows = rows_train + rows_good + [r for c in categories for r in rows_cat[c]]
        with (tmp / MANIFEST_FILE).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

        data = {
            "format": FORMAT,
            "generator": {
                "package": "synthetic_btad",
                "version": __version__,
                "numpy": np.__version__,
                "pillow": PIL.__version__,
            },
            "parameters": {
                "bases": bases,
                "size": size,
                "seed": seed,
                "n_train": n_train,
                "n_test_per_category": n_bases,
                "categories": categories,
                "include_test_good": include_test_good,
                "btad_root": None if btad_root is None else str(Path(btad_root).resolve()),
                "btad_product": btad_product,
                "btad_use_test_ok": btad_use_test_ok,
                "mvtec_root": None if mvtec_root is None else str(Path(mvtec_root).resolve()),
                "grouping": rules.to_dict(),
            },
            "stand_ins": {"bases": bases == "standin", "masks": library is None},
            "sources": {
                "bases": {
                    "kind": STAND_IN if bases == "standin" else bases,
                    "label": base_label,
                    "pool_size": pool_size,
                    "count_rule": count_rule,
                    "selection": (
                        "random permutation (seed stream 'split'): first n_test_per_category "
                        "are defect bases, the next n_train are training images"
                        if bases != "standin"
                        else "procedural machined-metal texture, one seed per image"
                    ),
                    **(
                        {
                            "package": f"{ELPV_PACKAGE} {elpv_version}",
                            "license": ELPV_LICENSE,
                            "pool": "cells with defect probability 0 and type poly, sorted by "
                            "file name; grey replicated to RGB",
                        }
                        if bases == "elpv"
                        else {}
                    ),
                },
                "masks": (
                    {"kind": "mvtec", **_mask_library_info(library)}
                    if library is not None
                    else {"kind": STAND_IN, "families": PROCEDURAL_FAMILIES}
                ),
                "fill": (
                    "x_sys = (1 - M) * x + M * C, C = per-channel mean of x over M, rounded"
                    if fill == "mean"
                    else "x_sys = (1 - M) * x + M * C, C = uniform random RGB per defect"
                ),
            },
            "counts": {
                "train/good": len(rows_train),
                "test/good": len(rows_good),
                **{f"test/{c}": len(rows_cat[c]) for c in categories},
                "total_images": len(rows),
            },
            "areas": {
                c: {
                    "area": _stats([r["area"] for r in rows_cat[c]]),
                    "area_ref": _stats([r["area_ref"] for r in rows_cat[c]]),
                }
                for c in categories
            },
            "contrast": DefectContrast(
                per_image={
                    c: {r["file"]: float(r["contrast"]) for r in rows_cat[c]} for c in rows_cat
                }
            ).to_dict(),
            "layout": {
                "normal_dir": "train/good",
                "normal_test_dir": "test/good" if include_test_good else None,
                "abnormal_dirs": {c: f"test/{c}" for c in categories},
                "mask_dirs": {c: f"ground_truth/{c}" for c in categories},
                "mask_name": f"<image stem>{MASK_SUFFIX}.png",
                "manifest": MANIFEST_FILE,
            },
            "notices": notices,
        }
        # The summary is written last: its presence marks a complete dataset.
        (tmp / SUMMARY_FILE).write_text(
            json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _publish(tmp, out, overwrite, token)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Summary(root=out, data=data)
