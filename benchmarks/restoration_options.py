"""Research script: the option table of the restoration issue from one benchmark run.

One line per model row of ``RUN_DIR/results.json``: absorption (against the clean twin and against
G(clean)) and the in-mask residual over the normal p99 (median per category, then averaged over
categories), pixel AUROC per category, mean
oracle Dice, test time per image and its ratio to R-RGI's in the same run. Applies the selection
rule fixed in configs/benchmark/elpv_restoration.yaml (highest mean oracle Dice among rows at
most ``--max-cost`` × R-RGI's test time; ties to the cheaper) and names the chosen row.

    python benchmarks/restoration_options.py runs/benchmark/elpv_restoration [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any


def _mean(values: list[float]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def summarise(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Categories (run order) and one summary per model (run order)."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    categories: list[str] = []
    for row in rows:
        by_model[row["model"]].append(row)
        if row["category"] not in categories:
            categories.append(row["category"])
    summaries = []
    for model, own in by_model.items():
        per_cat = {r["category"]: r for r in own}
        summaries.append(
            {
                "model": model,
                "absorption": _mean([r.get("absorption") for r in own]),
                "absorption_delta": _mean([r.get("absorption_delta") for r in own]),
                "residual_ratio": _mean([r.get("defect_residual_ratio") for r in own]),
                "auroc": {c: per_cat[c].get("pixel_auroc") for c in categories if c in per_cat},
                "dice": _mean([r.get("dice_oracle_mean") for r in own]),
                "seconds": _mean([r.get("test_seconds_per_image") for r in own]),
            }
        )
    return categories, summaries


def choose(summaries: list[dict[str, Any]], reference: str, max_cost: float) -> str | None:
    """The selection rule: best mean oracle Dice among GAN-inversion option rows within
    ``max_cost`` × the reference's test time per image; ties to the cheaper."""
    ref = next((s for s in summaries if s["model"] == reference), None)
    if ref is None:
        return None
    within = [
        s
        for s in summaries
        if s["model"].startswith(("rgi", "rrgi", "anogan"))
        and s["seconds"] <= max_cost * ref["seconds"]
    ]
    best = max(within, key=lambda s: (round(s["dice"], 3), -s["seconds"]), default=None)
    return None if best is None else best["model"]


def table(categories: list[str], summaries: list[dict[str, Any]], reference: str) -> str:
    ref = next((s["seconds"] for s in summaries if s["model"] == reference), math.nan)
    head = ["row", "absorption", "absorption vs G(clean)", "in-mask residual / normal p99"]
    head += [f"pixel AUROC {c}" for c in categories]
    head += ["mean oracle Dice", "test s/image", f"cost / {reference}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s["model"], _fmt(s["absorption"]), _fmt(s["absorption_delta"])]
        cells += [_fmt(s["residual_ratio"], 2)]
        cells += [_fmt(s["auroc"].get(c, math.nan)) for c in categories]
        cells += [_fmt(s["dice"]), _fmt(s["seconds"], 2), _fmt(s["seconds"] / ref, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--reference", default="rrgi", help="the cost reference row (R-RGI)")
    p.add_argument("--max-cost", type=float, default=4.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = json.loads((args.run_dir / "results.json").read_text())["rows"]
    categories, summaries = summarise(rows)
    text = table(categories, summaries, args.reference)
    chosen = choose(summaries, args.reference, args.max_cost)
    text += f"\n\nChosen by the rule (≤ {args.max_cost:g}× {args.reference}'s cost): {chosen}\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
