"""Build a synthetic BTAD dataset (paper Appendix F) atomically into an anomalib Folder layout."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthetic_btad.bases import (
    ELPV_LABEL,
    ELPV_LICENSE,
    ELPV_PACKAGE,
    btad_pool,
    elpv_pool,
    resolve_counts,
)
from synthetic_btad.errors import NotEnoughDataError, OutputExistsError
from synthetic_btad.layout import STAND_IN, SUMMARY_FILE, derive_seed
from synthetic_btad.masks import MaskLibrary, load_mvtec_masks
from synthetic_btad.params import BuildParams
from synthetic_btad.summary import Summary, is_dataset, summary_data
from synthetic_btad.writer import Progress, Writer

Notice = Callable[[str], None]


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


def _umask() -> int:
    """The process's umask (POSIX reads it only by setting it; set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


@dataclass
class _BasePlan:
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


def _plan_bases(p: BuildParams, note: Notice) -> _BasePlan:
    """Validate the base source and the counts before anything is written."""
    bases = p.source
    if bases == "standin":
        n_train, n_bases, rule = resolve_counts(None, p.n_train, p.n_test_per_category)
        note(
            "no BTAD root given: using generated product-03-like stand-in base images "
            f"(labelled '{STAND_IN}' in manifest and summary)"
        )
        label = "generated product-03-like stand-in (procedural machined metal)"
        return _BasePlan(label, None, rule, n_train, n_bases, [], [])
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
    return _BasePlan(label, len(pool), rule, n_train, n_bases, train_src, base_src, src_root,
                     elpv_version)  # fmt: skip


def _plan_masks(p: BuildParams, note: Notice) -> MaskLibrary | None:
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


def build_dataset(
    out: Path | str,
    params: BuildParams | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
    **changes: Any,
) -> Summary:
    """Write the synthetic BTAD benchmark to ``out`` and return its summary.

    The dataset is a function of ``params`` (``BuildParams``; its fields may also be given as
    keyword arguments, which override it) only: same parameters => identical bytes.
    ``bases`` picks the defect-free base images: generated stand-ins, BTAD or the ELPV solar
    cells; without ``mvtec_root`` the masks are generated stand-ins. Stand-ins are labelled as
    such in the manifest and summary, and every source is announced through ``notice``. Counts
    left as None follow the paper (900 train images, 100 defect bases = 100 test images per
    category) when enough images exist; ELPV keeps the 100 defect bases and trains on the other
    820 cells. Each category's i-th test image is defect-filled from base i with a mask drawn
    for it at random; ``fill="mean"`` is the paper's mean-colour fill, ``"random"`` paints each
    defect one random colour (loud defects). Everything is written into a temporary sibling of
    ``out`` and renamed at the end.
    """
    p = dataclasses.replace(params or BuildParams(), **changes)
    say = notice or (lambda _msg: None)
    notices: list[str] = []

    def note(msg: str) -> None:
        notices.append(msg)
        say(msg)

    out = Path(out)
    _check_output(out, overwrite)
    plan = _plan_bases(p, note)
    library = _plan_masks(p, note)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    # mkdtemp makes it 0700; the published dataset gets the mode mkdir would give (umask).
    tmp.chmod(0o777 & ~_umask())
    try:
        writer = Writer(tmp, p, plan, progress)
        writer.make_dirs()
        writer.write_train()
        writer.write_tests(library)
        writer.write_manifest()
        data = summary_data(p, plan, library, writer.rows, notices)
        # The summary is written last: its presence marks a complete dataset.
        (tmp / SUMMARY_FILE).write_text(
            json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _publish(tmp, out, overwrite, tmp.name.rsplit("-", 1)[-1])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Summary(root=out, data=data)
