"""``synthetic-btad`` command line: build the synthetic BTAD benchmark dataset."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthetic_btad.bases import BASE_SOURCES
from synthetic_btad.build import build_dataset
from synthetic_btad.contrast import format_contrast
from synthetic_btad.errors import SyntheticBTADError
from synthetic_btad.masks import CATEGORIES, DEFAULT_NAME_RULES
from synthetic_btad.params import FILLS, BuildParams


def _option(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """``--name-with-dashes`` for the BuildParams field ``name``, with its help and default."""
    default = BuildParams.default(name)
    help_text = kwargs.pop("help", None) or BuildParams.describe()[name]
    if default is not None and not isinstance(default, bool):
        shown = " ".join(default) if isinstance(default, tuple) else default
        help_text += f" (default {shown})"
        if kwargs.get("action") != "store_true":
            kwargs["default"] = list(default) if isinstance(default, tuple) else default
    help_text = help_text.replace("%", "%%")
    parser.add_argument("--" + name.replace("_", "-"), help=help_text, **kwargs)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synthetic-btad",
        description=(
            "Build the RGI paper's synthetic BTAD product-03 defect dataset (Appendix F) in a "
            "layout anomalib's Folder datamodule reads. A missing root is replaced by a generated "
            "stand-in."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    # One option per BuildParams field: help and defaults come from there.
    _option(p, "bases", choices=BASE_SOURCES)
    _option(p, "btad_root", type=Path)
    _option(p, "mvtec_root", type=Path)
    _option(p, "size", type=int)
    _option(p, "seed", type=int)
    _option(p, "n_train", type=int)
    _option(p, "n_test_per_category", type=int)
    _option(p, "categories", nargs="+", choices=CATEGORIES)
    p.add_argument(
        "--no-test-good", action="store_true", help="do not write the clean bases to test/good"
    )
    _option(p, "large_area_threshold", type=int)
    _option(p, "area_reference_size", type=int)
    rules = json.dumps({k: list(v) for k, v in DEFAULT_NAME_RULES.items()})
    _option(p, "grouping_rules", type=Path, help=f"JSON file of name rules; default {rules}")
    _option(p, "btad_product")
    _option(p, "btad_use_test_ok", action="store_true")
    _option(p, "fill", choices=FILLS)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _read_rules(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SyntheticBTADError(f"cannot read grouping rules {path}: {exc}") from exc
    if not isinstance(rules, dict):
        raise SyntheticBTADError("grouping rules must be a JSON object {category: [glob]}")
    return rules


class _Bar:
    """A rich progress bar started on the first image, so that input errors print without an
    empty bar; ``stop`` is safe when it never started."""

    def __init__(self, disable: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]synthetic-btad"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=disable,
        )
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("writing", total=total)
        self.bar.update(self.task, completed=done)

    def stop(self) -> None:
        if self.task is not None:
            self.bar.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)

    def notice(msg: str) -> None:
        print(f"notice: {msg}", file=sys.stderr)

    try:
        given = {k: getattr(args, k) for k in BuildParams.describe() if hasattr(args, k)}
        given.update(include_test_good=not args.no_test_good)
        given.update(grouping_rules=_read_rules(args.grouping_rules))
        given["categories"] = tuple(given["categories"])
        bar = _Bar(disable=args.no_progress)
        try:
            summary = build_dataset(
                args.out,
                BuildParams(**given),
                overwrite=args.overwrite,
                progress=bar,
                notice=notice,
            )
        finally:
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
