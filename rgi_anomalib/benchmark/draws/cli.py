"""The ``rgi-anomalib report`` command line (the report itself: ``tables.report``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .runs import BASELINE_MODELS, ReportError, load_runs, merge_baselines
from .tables import MAIN_METHODS, report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgi-anomalib report",
        description="One Markdown report over several draws of a benchmark config (one run "
        "directory each): mean ± sd over draws of every metric, λ by labelled cross-validation, "
        "and the paper's claims decided on paired draws.",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="write the report here (default: print it)")
    p.add_argument(
        "--baselines",
        nargs="+",
        type=Path,
        default=[],
        help="run dirs of the same draws whose rows fill in the models the runs lack",
    )
    p.add_argument(
        "--baseline-models",
        nargs="+",
        default=list(BASELINE_MODELS),
        help="models --baselines may fill in (default: %(default)s, which use no generator)",
    )
    p.add_argument(
        "--gan-seed-runs",
        nargs="+",
        type=Path,
        default=[],
        help="run dirs of the same config and draws trained with another seed (--seeds): "
        "reported beside the main run, not averaged into it",
    )
    p.add_argument(
        "--models",
        nargs="+",
        help="report only these rows (default: every row of the runs); e.g. the rows a config "
        "ran on every draw when one draw also ran others",
    )
    return p


def _report(args: argparse.Namespace, argv: Sequence[str]) -> str:
    rows, taken = merge_baselines(
        load_runs(args.run_dirs), args.run_dirs, args.baselines, tuple(args.baseline_models)
    )
    if args.models:
        unknown = sorted(set(args.models) - {r["model"] for r in rows})
        if unknown:
            raise ReportError(f"--models: no rows of {', '.join(unknown)} in these runs")
        rows = [r for r in rows if r["model"] in args.models]
    if not rows:
        raise ReportError(f"no rows in {', '.join(map(str, args.run_dirs))}")
    other_seed = None
    if args.gan_seed_runs:
        other_seed, _ = merge_baselines([], args.run_dirs, args.gan_seed_runs, MAIN_METHODS)
    command = " ".join(["rgi-anomalib report", *argv])
    return report(rows, args.run_dirs, command, tuple(taken), other_seed)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        text = _report(args, argv)
    except ReportError as exc:
        print(f"rgi-anomalib report: error: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        print(text)
        return 0
    from rgi_anomalib.utils import atomic_path

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(f"wrote {args.out}")
    return 0
