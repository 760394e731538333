"""Are two runs of one benchmark config the same? Row-by-row differences of every metric.

Run a config twice with the same seeds (same machine, same threads), then:

    python benchmarks/reproducibility.py runs/benchmark/quick-a runs/benchmark/quick-b \
        [--out docs/results/reproducibility.md]

prints, per method and metric, whether the two runs agree to the last bit and otherwise the
largest absolute difference over categories and datasets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

METRICS = (
    "dice_oracle_mean",
    "dice_dataset_mean",
    "dice_label_free_mean",
    "pixel_auroc",
    "aupro",
    "image_auroc",
    "gap_rmse",
)


def _rows(run_dir: Path) -> dict[tuple[str, str, str, int], dict]:
    path = run_dir / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: give two run directories of rgi-anomalib benchmark")
    rows = json.loads(path.read_text())["rows"]
    return {(r["model"], r["dataset"], r["category"], r["seed"]): r for r in rows}


def compare(a: Path, b: Path) -> str:
    rows_a, rows_b = _rows(a), _rows(b)
    if rows_a.keys() != rows_b.keys():
        raise SystemExit("the two runs have different rows (other config or seeds)")
    worst: dict[str, dict[str, float]] = defaultdict(dict)
    for key, ra in rows_a.items():
        rb = rows_b[key]
        for metric in METRICS:
            va, vb = ra.get(metric), rb.get(metric)
            if va is None or vb is None or (math.isnan(va) and math.isnan(vb)):
                continue
            diff = abs(va - vb)
            worst[key[0]][metric] = max(worst[key[0]].get(metric, 0.0), diff)
    lines = [
        f"Runs `{a}` and `{b}`: largest absolute difference per method and metric over all "
        "datasets and categories (0 = identical to the last bit).",
        "",
        "| method | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for model, per_metric in worst.items():
        cells = [
            "0" if per_metric.get(m) == 0 else f"{per_metric[m]:.4f}" if m in per_metric else "–"
            for m in METRICS
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    identical = all(v == 0 for per in worst.values() for v in per.values())
    lines += ["", "Identical." if identical else "Not identical: see the differences above."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    text = compare(args.run_a, args.run_b)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
