"""The Markdown report over draws: claims, λ, every metric, restoration, costs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .runs import flag_all_row, index
from .verdicts import (
    DICE,
    category_means,
    cell,
    claims,
    cross_validated,
    dice,
    flag_all_means,
    lambda_grid,
    mean_sd,
    other_seed_table,
    values,
)

METRICS = (
    ("dice_oracle_mean", "Dice oracle"),
    ("dice_label_free_mean", "Dice label-free"),
    ("dice_mask_rule_mean", "Dice M̂>0"),
    ("pixel_auroc", "pixel AUROC"),
    ("aupro", "AUPRO"),
    ("gap_rmse", "gap"),
)

# Restoration under the defect (issue 33): each a median over a category's defect images.
RESTORATION = (
    ("absorption", "absorption under the defect (0: restored, 1: copied)"),
    ("absorption_delta", "absorption without the generator's error, G(ẑ) − G(clean)"),
    ("restoration_psnr", "in-mask PSNR against the clean twin (dB)"),
    ("defect_residual_ratio", "in-mask residual / normal images' 99th percentile"),
)

MAIN_METHODS = ("rgi", "rrgi", "anogan", "rgi_auto", "rrgi_auto", "patchcore", "draem", "rasl")


def main_table(
    table: dict, methods: list[str], categories: list[str], flag_all: dict[str, list[float]]
) -> list[str]:
    lines = []
    for key, label in METRICS:
        lines += [f"### {label}", "", "| method | " + " | ".join([*categories, "mean"]) + " |"]
        lines.append("|---" * (len(categories) + 2) + "|")
        for method in methods:
            cells = [cell([r.get(key) for r in table[method, c].values()]) for c in categories]
            per_draw = category_means(table, method, categories, key)
            lines.append(f"| {method} | " + " | ".join([*cells, cell(per_draw)]) + " |")
        if key == DICE and all(flag_all.get(c) for c in categories):
            cells = [cell(list(flag_all[c].values())) for c in categories]
            per_draw = flag_all_means(flag_all, categories)
            lines.append("| *flag every pixel* | " + " | ".join([*cells, cell(per_draw)]) + " |")
        lines.append("")
    return lines


def restoration_table(table: dict, methods: list[str], categories: list[str]) -> list[str]:
    """The restoration metrics per method and category (mean ± sd over draws), or one line
    saying the runs did not measure them."""
    measured = any(
        row.get(key) is not None
        for (method, _), draws in table.items()
        if method in methods
        for row in draws.values()
        for key, _ in RESTORATION
    )
    if not measured:
        return [
            "Not measured in these runs (results.json written before the metrics existed, no "
            "clean twins, or no model that restores).",
            "",
        ]
    lines = [
        "Per defect image over its mask, [0, 1] pixel units at the scoring resolution, against "
        "its clean twin (test/good); median over a category's defect images, then mean ± sd "
        "over draws. –: not measured (no restoration, e.g. PatchCore, DRAEM, RASL).",
        "",
    ]
    for key, label in RESTORATION:
        lines += [f"### {label}", "", "| method | " + " | ".join([*categories, "mean"]) + " |"]
        lines.append("|---" * (len(categories) + 2) + "|")
        for method in methods:
            cells = [cell(values(table, method, c, key)) for c in categories]
            per_draw = category_means(table, method, categories, key)
            lines.append(f"| {method} | " + " | ".join([*cells, cell(per_draw)]) + " |")
        lines.append("")
    return lines


def lambda_table(table: dict, categories: list[str]) -> list[str]:
    lines = [
        "| method | λ | " + " | ".join(categories) + " |",
        "|---|---" + "|---" * len(categories) + "|",
    ]
    for family in ("rgi", "rrgi"):
        if (family, categories[0]) not in table:
            continue
        rows = {"paper's λ, oracle Dice": [cell(dice(table, family, c)) for c in categories]}
        if (f"{family}_auto", categories[0]) in table:
            rows["auto (normal images), oracle Dice"] = [
                cell(dice(table, f"{family}_auto", c)) for c in categories
            ]
            rows["auto, deployable M̂ > 0 Dice"] = [
                cell(values(table, f"{family}_auto", c, "dice_mask_rule_mean")) for c in categories
            ]
        if len(lambda_grid(table, family)) > 1 and len(table[family, categories[0]]) > 1:
            cv = [cross_validated(table, family, c) for c in categories]
            rows["labelled CV, oracle Dice"] = [cell(s) for s, _ in cv]
            rows["labelled CV, λ picked"] = [" ".join(picks) for _, picks in cv]
        for label, cells in rows.items():
            lines.append(f"| {family} | {label} | " + " | ".join(cells) + " |")
    auto_lams = sorted(
        {
            json.loads(r["init_args"]).get("fitted", {}).get("lam")
            for (m, _), draws in table.items()
            if m.endswith("_auto")
            for r in draws.values()
        }
        - {None}
    )
    chosen = ", ".join(f"{v:.4f}" for v in auto_lams) or "none (no `*_auto` rows in these runs)"
    lines += ["", f"λ chosen by `lam: auto` (all draws): {chosen}"]
    return lines


def costs(table: dict, methods: list[str], categories: list[str]) -> list[str]:
    lines = ["| method | fit s | test s/image |", "|---|---|---|"]
    for method in methods:
        rows = [r for c in categories for r in table[method, c].values()]
        fit = statistics.fmean(r["fit_seconds"] for r in rows)
        test = statistics.fmean(r["test_seconds_per_image"] for r in rows)
        lines.append(f"| {method} | {fit:.0f} | {test:.2f} |")
    return lines


def gan_seed_table(table: dict, other: dict, categories: list[str]) -> list[str]:
    """Per method and draw both runs have: the category-mean oracle Dice and gap with the main
    run's GAN seed and with another (same draw, same test images), their difference, and the
    sd over draws of the main run for scale."""
    lines = [
        "| method | draw | Dice, this seed / other seed (Δ) | gap, this / other | "
        "sd of Dice over draws |",
        "|---|---|---|---|---|",
    ]
    for method in MAIN_METHODS:
        if (method, categories[0]) not in other or (method, categories[0]) not in table:
            continue
        draws = sorted(set(table[method, categories[0]]) & set(other[method, categories[0]]))
        means = category_means(table, method, categories, DICE)
        spread = mean_sd([v for v in means if v is not None])[1]
        for draw in draws:
            dice = [
                statistics.fmean(t[method, c][draw][DICE] for c in categories)
                for t in (table, other)
            ]
            gap = [
                statistics.fmean(t[method, c][draw]["gap_rmse"] for c in categories)
                for t in (table, other)
            ]
            lines.append(
                f"| {method} | {draw} | {dice[0]:.3f} / {dice[1]:.3f} ({dice[1] - dice[0]:+.3f}) "
                f"| {gap[0]:.3f} / {gap[1]:.3f} | {spread:.3f} |"
            )
    return lines


def report(
    rows: list[dict[str, Any]],
    run_dirs: list[Path],
    command: str,
    taken: tuple[str, ...] = (),
    other_seed: list[dict[str, Any]] | None = None,
) -> str:
    table = index(rows)
    categories = list(dict.fromkeys(r["category"] for r in rows))
    # The paper's methods and baselines first, then any other row of the runs (an option such as
    # rgi_features): its metrics are tabled beside them; the claims stay about the paper's rows.
    methods = [m for m in MAIN_METHODS if (m, categories[0]) in table]
    methods += [m for m in dict.fromkeys(r["model"] for r in rows) if m not in methods]
    draws = sorted({r["dataset"] for r in rows})
    flag_all = flag_all_row(run_dirs, rows)
    first = rows[0]
    return "\n".join(
        [
            "# Table 2 over draws: mean ± sd",
            "",
            f"Command: `{command}`. Runs: {', '.join(str(d) for d in run_dirs)}. Draws "
            f"(datasets): {', '.join(draws)}; {first['image_size']} px; {first['n_defect']} "
            f"defect images per category and {first['n_normal']} normal test images per draw. "
            "Every cell: mean over draws ± sample standard deviation."
            + (
                f" Rows of {', '.join(taken)}: from the `--baselines` runs of the same draws "
                "(test images and masks byte-identical, checked)."
                if taken
                else ""
            ),
            "",
            "## The paper's claims",
            "",
            *claims(table, categories, flag_all, other_seed_table(rows, other_seed or [])),
            "",
            "## λ: the paper's, without labels, by labelled cross-validation",
            "",
            *lambda_table(table, categories),
            "",
            "## All metrics",
            "",
            *main_table(table, methods, categories, flag_all),
            "## Restoration under the defect",
            "",
            *restoration_table(table, methods, categories),
            "## Cost (mean over draws and categories)",
            "",
            *costs(table, methods, categories),
            "",
            *(_gan_seed_section(table, other_seed, categories) if other_seed else []),
        ]
    )


def _gan_seed_section(
    table: dict, other_seed: list[dict[str, Any]], categories: list[str]
) -> list[str]:
    seeds = sorted({r["seed"] for r in other_seed})
    return [
        f"## Another GAN seed ({', '.join(map(str, seeds))}) on the same draws",
        "",
        "The same config trained with another seed (`--seeds`), tested on the same test images: "
        "how much of a difference between methods the generator's training run alone can make.",
        "",
        *gan_seed_table(table, index(other_seed), categories),
        "",
    ]
