"""Lay out the real images in ``../shared/data`` as a BTAD root and an MVTec AD root (symlinks).

``synthetic_btad`` reads a BTAD root (``<root>/03/train/ok/*``) and an MVTec AD root
(``<root>/<category>/ground_truth/<defect>/*_mask.png``). The shared data holds neither layout, so
this script mirrors it with symlinks (nothing is copied):

- ``<out>/btad/03/train/ok/NNNN.png``: the 52 real MVTec hazelnut photos (50 train/good and
  2 test/good, 256 px) stand in for BTAD product 03, whose images are not available here;
- ``<out>/mvtec/{grid,hazelnut,transistor}``: the 27 real MVTec AD defect masks with their images.

Then ``rgi-anomalib benchmark --config configs/benchmark/real_hazelnut.yaml`` runs the benchmark
on them. Usage::

    python benchmarks/link_shared_data.py [--shared ../shared/data] [--out datasets/shared_real]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "datasets" / "shared_real"

HAZELNUT = Path("mvtec_ad_ind_knn_ad/datasets/hazelnut_reduced")
MASK_SOURCES = {  # MVTec category -> its folder in the shared data
    "grid": Path("mvtec_ad_grid_otx/data/mvtec"),
    "hazelnut": HAZELNUT,
    "transistor": Path("mvtec_ad_ind_knn_ad/datasets/transistor_reduced"),
}


def _link_defects(src: Path, dst: Path) -> int:
    """Mirror ``ground_truth/<defect>/*`` and ``test/<defect>/*`` (not ``good``); count masks."""
    n_masks = 0
    for sub in ("ground_truth", "test"):
        for defect in sorted(d for d in (src / sub).iterdir() if d.is_dir() and d.name != "good"):
            out = dst / sub / defect.name
            out.mkdir(parents=True)
            for file in sorted(defect.iterdir()):
                (out / file.name).symlink_to(file.resolve())
                n_masks += sub == "ground_truth"
    return n_masks


def link_shared_data(shared: Path, out: Path) -> dict[str, int]:
    """Build ``out/btad`` and ``out/mvtec``; return the counts. Replaces an older ``out``."""
    missing = [
        p for p in dict.fromkeys([HAZELNUT, *MASK_SOURCES.values()]) if not (shared / p).is_dir()
    ]
    if missing:
        msg = f"--shared {shared}: missing {', '.join(map(str, missing))} (see its INDEX.md)"
        raise FileNotFoundError(msg)
    photos = sorted((shared / HAZELNUT / "train" / "good").glob("*.png"))
    photos += sorted((shared / HAZELNUT / "test" / "good").glob("*.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside ``out`` and renamed at the end: an interrupted run leaves no half tree.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        ok = tmp / "btad" / "03" / "train" / "ok"
        ok.mkdir(parents=True)
        for i, photo in enumerate(photos):
            (ok / f"{i:04d}.png").symlink_to(photo.resolve())
        n_masks = sum(
            _link_defects(shared / src, tmp / "mvtec" / name) for name, src in MASK_SOURCES.items()
        )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"base_photos": len(photos), "masks": n_masks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to put the roots")
    args = parser.parse_args(argv)
    try:
        counts = link_shared_data(args.shared, args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['base_photos']} base photos, {counts['masks']} masks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
