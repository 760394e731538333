"""``synthetic-btad`` command line: build the synthetic BTAD benchmark dataset."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from synthetic_btad.bases import BASE_SOURCES
from synthetic_btad.build import build_dataset
from synthetic_btad.contrast import format_contrast
from synthetic_btad.errors import SyntheticBTADError
from synthetic_btad.masks import CATEGORIES, DEFAULT_NAME_RULES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synthetic-btad",
        description=(
            "Build the RGI paper's synthetic BTAD product-03 defect dataset (Appendix F) in a "
            "layout anomalib's Folder datamodule reads. A missing root is replaced by a generated "
            "stand-in."
        ),
    )
    p.add_argument(
        "--bases",
        choices=BASE_SOURCES,
        help=(
            "defect-free base images: standin (generated, the default), btad (BTAD from "
            "--btad-root, implied by it) or elpv (920 defect-free polycrystalline ELPV solar "
            "cells, CC BY-NC-SA 4.0; needs `pip install elpv-dataset`)"
        ),
    )
    p.add_argument("--btad-root", type=Path, help="BTAD root (<root>/03/train/ok/*.bmp)")
    p.add_argument(
        "--mvtec-root", type=Path, help="MVTec AD root (<root>/<cat>/ground_truth/<defect>/*.png)"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="master random seed (default 0)")
    p.add_argument(
        "--n-train",
        type=int,
        help="training images (default 900; 90%% of a BTAD pool under 1000; 820 for elpv)",
    )
    p.add_argument(
        "--n-test-per-category",
        type=int,
        help="defect bases = test images per category (default 100; 10%% of a BTAD pool under "
        "1000)",
    )
    p.add_argument(
        "--categories",
        nargs="+",
        choices=CATEGORIES,
        default=list(CATEGORIES),
        help="defect categories to write (default: all four)",
    )
    p.add_argument(
        "--no-test-good", action="store_true", help="do not write the clean bases to test/good"
    )
    p.add_argument(
        "--large-area-threshold",
        type=int,
        default=400,
        help="masks above this area (at the reference size) are mixed_large (default 400)",
    )
    p.add_argument(
        "--area-reference-size",
        type=int,
        default=128,
        help="resolution at which the area rule is applied (default 128)",
    )
    p.add_argument(
        "--grouping-rules",
        type=Path,
        help=(
            "JSON file {category: [glob, ...]} of name rules, first match wins; default "
            + json.dumps({k: list(v) for k, v in DEFAULT_NAME_RULES.items()}).replace("%", "%%")
        ),
    )
    p.add_argument("--btad-product", default="03", help="BTAD product folder (default 03)")
    p.add_argument(
        "--btad-use-test-ok", action="store_true", help="also use <product>/test/ok as bases"
    )
    p.add_argument(
        "--fill",
        choices=("mean", "random"),
        default="mean",
        help="defect colour: the region's mean (the paper, default) or one random colour (loud)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)

    def notice(msg: str) -> None:
        print(f"notice: {msg}", file=sys.stderr)

    rules = None
    try:
        if args.grouping_rules is not None:
            try:
                rules = json.loads(args.grouping_rules.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SyntheticBTADError(
                    f"cannot read grouping rules {args.grouping_rules}: {exc}"
                ) from exc
            if not isinstance(rules, dict):
                raise SyntheticBTADError("grouping rules must be a JSON object {category: [glob]}")

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("[bold]synthetic-btad"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=args.no_progress,
        )
        task = None

        def progress(done: int, total: int) -> None:
            # Started on the first image, so that input errors print without an empty bar.
            nonlocal task
            if task is None:
                bar.start()
                task = bar.add_task("writing", total=total)
            bar.update(task, completed=done)

        try:
            summary = build_dataset(
                args.out,
                bases=args.bases,
                btad_root=args.btad_root,
                mvtec_root=args.mvtec_root,
                size=args.size,
                seed=args.seed,
                n_train=args.n_train,
                n_test_per_category=args.n_test_per_category,
                categories=args.categories,
                include_test_good=not args.no_test_good,
                grouping_rules=rules,
                large_area_threshold=args.large_area_threshold,
                area_reference_size=args.area_reference_size,
                btad_product=args.btad_product,
                btad_use_test_ok=args.btad_use_test_ok,
                fill=args.fill,
                overwrite=args.overwrite,
                progress=progress,
                notice=notice,
            )
        finally:
            if task is not None:
                bar.stop()
    except (SyntheticBTADError, ValueError) as exc:
        print(f"synthetic-btad: error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    print(f"wrote {summary.root} ({counts})")
    print(f"bases: {summary.data['sources']['bases']['label']}")
    print("defect contrast (in-mask RMS difference to the clean twin, [0, 1] units):")
    print(format_contrast(summary.contrast))
    return 0


if __name__ == "__main__":
    sys.exit(main())
