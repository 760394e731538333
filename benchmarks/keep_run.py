"""Keep what ``--resume`` needs of a long benchmark run in the repository, and put it back.

A run directory holds its built datasets and logs (tens of MB per draw), but ``benchmark --resume``
needs only a few small files: the run marker, each finished unit's ``done.json`` and
``samples.npz``, and the categories an unfinished unit scored. Trained weights (``fitted.pt``) are
not kept: they are not source. Every row scored with a generator records the SHA-256 of its weights,
so a resumed run that needs the generator trains it again (about 20 core-minutes at 128 px) and
keeps those rows if it reproduces the digest (the same CPU and one thread), or scores them again if
not. The datasets are rebuilt from the config by the resumed run. Sessions on the CPU machines here
end after 3 hours and start from a fresh checkout, and the issue-scale Table 2 takes hours per draw,
so its progress is kept under ``benchmarks/kept_runs/`` between sessions::

    python benchmarks/keep_run.py save runs/benchmark/elpv_table2/elpv_s0 \\
        benchmarks/kept_runs/elpv_table2/elpv_s0
    python benchmarks/keep_run.py restore benchmarks/kept_runs/elpv_table2/elpv_s0 \\
        runs/benchmark/elpv_table2/elpv_s0
    rgi-anomalib benchmark --config configs/benchmark/elpv_table2.yaml --datasets elpv_s0 \\
        --run-dir runs/benchmark/elpv_table2/elpv_s0 --resume

``save`` mirrors: a kept file that the run no longer has (the categories of a unit that has
finished since) is removed. ``restore`` only fills an empty or missing run directory.

The repository keeps rows only: delete the copied ``samples.npz`` files (about 1.8 MB per unit)
before committing a kept run; a run's full state goes in a tarball outside the repository
(docs/results/README.md, "Kept runs").
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

MARKER = ".rgi-benchmark-run"  # rgi_anomalib.benchmark.cli.MARKER
KEPT = (
    MARKER,  # results.json is left out: a resumed run writes it again, for every unit
    "work/*/done.json",
    "work/*/samples.npz",
    "work/*/categories/*.json",
    "work/*/categories/*.npz",
)


def kept_files(root: Path) -> set[Path]:
    """The files under ``root`` that ``--resume`` needs, relative to it."""
    return {p.relative_to(root) for pattern in KEPT for p in root.glob(pattern) if p.is_file()}


def _copy(src: Path, dst: Path) -> None:
    """Copy to a temporary name beside ``dst``, then rename: never a half-written file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def save(run_dir: Path, out: Path) -> int:
    """Mirror the kept files of ``run_dir`` into ``out``; the number copied."""
    if not (run_dir / MARKER).is_file():
        raise SystemExit(f"keep_run save: {run_dir} is not a benchmark run directory (no {MARKER})")
    wanted = kept_files(run_dir)
    for stale in kept_files(out) - wanted if out.is_dir() else set():
        (out / stale).unlink()
    for rel in sorted(wanted):
        _copy(run_dir / rel, out / rel)
    for folder in sorted(out.glob("work/*/categories"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return len(wanted)


def restore(kept: Path, run_dir: Path) -> int:
    """Copy kept files into a new (or empty) ``run_dir``; the number copied."""
    if not (kept / MARKER).is_file():
        raise SystemExit(f"keep_run restore: {kept} holds no kept run (no {MARKER})")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(
            f"keep_run restore: {run_dir} is not empty; restore into a new directory "
            "(or go on in this one with --resume)"
        )
    files = kept_files(kept)
    for rel in sorted(files):
        _copy(kept / rel, run_dir / rel)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, src, dst in (("save", "run_dir", "out"), ("restore", "kept", "run_dir")):
        cmd = sub.add_parser(name)
        cmd.add_argument(src, type=Path)
        cmd.add_argument(dst, type=Path)
    args = p.parse_args(argv)
    if args.command == "save":
        count = save(args.run_dir, args.out)
        print(f"kept {count} files of {args.run_dir} in {args.out}")
    else:
        count = restore(args.kept, args.run_dir)
        print(f"restored {count} files into {args.run_dir}; go on with --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
