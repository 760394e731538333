"""Table 2 over several draws of a benchmark: mean ± spread, λ by labelled CV, the paper's claims.

Reads the ``results.json`` of run directories that ran one config on different draws (datasets
built with different seeds, e.g. ``--datasets elpv_s0`` ... of configs/benchmark/elpv_table2.yaml)
and writes one Markdown report:

- per method and category, the mean over draws ± the sample standard deviation of every Dice
  definition, pixel AUROC, AUPRO, the reconstruction gap and the costs;
- λ chosen three ways for RGI and R-RGI: the paper's values (the ``rgi`` / ``rrgi`` rows), without
  labels (``*_auto`` rows, the deployable M̂ > 0 rule) and by labelled cross-validation over the
  ``<method>_lam<value>`` rows: each category's λ is the one with the best oracle Dice on one draw,
  scored on the other draws (every draw takes a turn; the test draw never picks its own λ);
- the restoration under the defect, where the runs measured it (synthetic draws with their
  clean twins, a model that restores): absorption RMS_M(G(ẑ) − clean) / RMS_M(x − clean) (0: the
  surface restored, 1: the defect copied), the in-mask PSNR against the clean twin and the
  in-mask residual over the normal images' 99th percentile (rgi_anomalib/benchmark/metrics.py);
  rows of older runs lack them and read "–";
- the oracle Dice of flagging every pixel, per category (what a constant map scores; a method near
  it has found nothing), from the masks each draw wrote (``datasets/<draw>/ground_truth``);
- the paper's claims (section 4.2), each decided on paired draws: "holds" when the method is
  ahead in every draw by more than the draws' spread of the difference (and by at least
  ``MIN_EFFECT`` Dice), "does not hold" when it is behind that clearly, "cannot tell" otherwise,
  and also when neither method is ahead, by the same rule, of flagging every pixel.

    python benchmarks/table2.py runs/benchmark/elpv_table2_cpu/elpv_s* --out BENCHMARKS_table2.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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
DICE = "dice_oracle_mean"
MAIN_METHODS = ("rgi", "rrgi", "anogan", "rgi_auto", "rrgi_auto", "patchcore", "draem", "rasl")
LARGE = "mixed_large"
BASELINE_MODELS = ("patchcore", "draem", "rasl")  # the rows that do not use the generator
# A Dice difference smaller than this is called level whatever its spread: with 2-3 draws a
# near-constant difference has a tiny sd, and 0.001 Dice would otherwise "hold".
MIN_EFFECT = 0.01


def load_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Rows of every run directory; one error naming a directory without results."""
    rows = []
    for run_dir in run_dirs:
        path = run_dir / "results.json"
        if not path.is_file():
            raise SystemExit(f"table2: {path} not found (run the benchmark there first)")
        rows += json.loads(path.read_text())["rows"]
    return rows


def _dataset_digest(run_dir: Path, dataset: str) -> str:
    """SHA-256 over a draw's test images and masks (paths and bytes), as written in ``run_dir``."""
    root = run_dir / "datasets" / dataset
    paths = sorted([*root.glob("test/*/*.png"), *root.glob("ground_truth/*/*.png")])
    if not paths:
        raise SystemExit(f"table2: no test images under {root}")
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def merge_baselines(
    rows: list[dict[str, Any]],
    run_dirs: list[Path],
    baseline_dirs: list[Path],
    models: tuple[str, ...] = BASELINE_MODELS,
) -> tuple[list[dict[str, Any]], list[str]]:
    """``rows`` plus the rows of ``baseline_dirs`` for (model, draw) pairs ``rows`` lacks, of the
    given ``models`` only (by default the generator-independent PatchCore, DRAEM and RASL: another
    config's GAN rows, e.g. its λ grid, were solved on another generator and must not mix in).
    A draw's rows are only taken when its test images and masks are byte-identical in both runs
    (same build seed, same bytes); otherwise one error names the draw. Returns the merged rows and
    the names of the models taken."""
    here = {(r["model"], r["dataset"]) for r in rows}
    digests = {
        dataset: _dataset_digest(d, dataset)
        for d in run_dirs
        for dataset in {r["dataset"] for r in load_runs([d])}
    }
    taken: list[dict[str, Any]] = []
    for baseline_dir in baseline_dirs:
        checked: set[str] = set()  # hash each draw of a baseline run once, not once per row
        for row in load_runs([baseline_dir]):
            draw = row["dataset"]
            if row["model"] not in models or (row["model"], draw) in here or draw not in digests:
                continue
            if draw not in checked and _dataset_digest(baseline_dir, draw) != digests[draw]:
                raise SystemExit(f"table2: draw {draw} in {baseline_dir} differs from the run's")
            checked.add(draw)
            taken.append(row)
    return rows + taken, sorted({r["model"] for r in taken})


def flag_all_dice(mask_dir: Path, size: int) -> float:
    """Mean over masks of the Dice of predicting every pixel defective, 2a / (a + 1) for a mask
    covering a fraction a, at ``size`` px (nearest-neighbour resize: close to, not exactly, the
    harness's resize of the ground truth)."""
    paths = sorted(mask_dir.glob("*.png"))
    if not paths:
        raise SystemExit(f"table2: no masks in {mask_dir}")
    fractions = [
        (np.asarray(Image.open(p).convert("L").resize((size, size), Image.NEAREST)) > 127).mean()
        for p in paths
    ]
    return statistics.fmean(2 * a / (a + 1) for a in fractions)


def flag_all_row(run_dirs: list[Path], rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Category -> {draw: flag-every-pixel Dice}; draws whose masks are not on disk are left out."""
    size = rows[0]["image_size"]
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for run_dir in run_dirs:
        for dataset in sorted({r["dataset"] for r in rows}):
            truth = run_dir / "datasets" / dataset / "ground_truth"
            for category in sorted(p.name for p in truth.glob("*") if p.is_dir()):
                out[category][dataset] = flag_all_dice(truth / category, size)
    return out


def _flag_all_means(flag_all: dict, categories: list[str]) -> list[Any]:
    """Per draw (sorted), the flag-every-pixel Dice averaged over ``categories``."""
    draws = sorted(set().union(*(flag_all.get(c, {}).keys() for c in categories)))
    values = [[flag_all.get(c, {}).get(d) for c in categories] for d in draws]
    return [None if None in v else statistics.fmean(v) for v in values]


def index(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(model, category) -> {draw (dataset name): row}."""
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        table[row["model"], row["category"]][row["dataset"]] = row
    return table


def _mean_sd(values: list[float]) -> tuple[float, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def _cell(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    mean, sd = _mean_sd(present)
    return f"{mean:.3f} ± {sd:.3f}"


def main_table(
    table: dict, methods: list[str], categories: list[str], flag_all: dict[str, list[float]]
) -> list[str]:
    lines = []
    for key, label in METRICS:
        lines += [f"### {label}", "", "| method | " + " | ".join([*categories, "mean"]) + " |"]
        lines.append("|---" * (len(categories) + 2) + "|")
        for method in methods:
            cells = [_cell([r.get(key) for r in table[method, c].values()]) for c in categories]
            per_draw = _category_means(table, method, categories, key)
            lines.append(f"| {method} | " + " | ".join([*cells, _cell(per_draw)]) + " |")
        if key == DICE and all(flag_all.get(c) for c in categories):
            cells = [_cell(list(flag_all[c].values())) for c in categories]
            per_draw = _flag_all_means(flag_all, categories)
            lines.append("| *flag every pixel* | " + " | ".join([*cells, _cell(per_draw)]) + " |")
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
            cells = [_cell(_values(table, method, c, key)) for c in categories]
            per_draw = _category_means(table, method, categories, key)
            lines.append(f"| {method} | " + " | ".join([*cells, _cell(per_draw)]) + " |")
        lines.append("")
    return lines


def _category_means(table: dict, method: str, categories: list[str], key: str) -> list[Any]:
    """Per draw, the mean over categories (None where a value is missing)."""
    draws = sorted(set().union(*(table[method, c].keys() for c in categories)))
    out = []
    for draw in draws:
        values = [table[method, c].get(draw, {}).get(key) for c in categories]
        out.append(None if None in values else statistics.fmean(values))
    return out


def lambda_grid(table: dict, family: str) -> dict[str, str]:
    """λ label -> model name: the family's default row and its ``<family>_lam<value>`` rows."""
    grid = {"paper": family}
    for model, _ in table:
        if model.startswith(f"{family}_lam"):
            grid[model.removeprefix(f"{family}_lam")] = model
    return grid


def cross_validated(table: dict, family: str, category: str) -> tuple[list[float], list[str]]:
    """Per test draw, the oracle Dice of λ chosen on each other draw (averaged), and the picks."""
    grid = lambda_grid(table, family)
    draws = sorted(table[family, category])
    scores, picks = [], []
    for test in draws:
        chosen_scores = []
        for pick_on in (d for d in draws if d != test):
            best = max(grid, key=lambda lam: table[grid[lam], category][pick_on][DICE])
            picks.append(best)
            chosen_scores.append(table[grid[best], category][test][DICE])
        scores.append(statistics.fmean(chosen_scores))
    return scores, picks


def lambda_table(table: dict, categories: list[str]) -> list[str]:
    lines = [
        "| method | λ | " + " | ".join(categories) + " |",
        "|---|---" + "|---" * len(categories) + "|",
    ]
    for family in ("rgi", "rrgi"):
        if (family, categories[0]) not in table:
            continue
        rows = {"paper's λ, oracle Dice": [_cell(_dice(table, family, c)) for c in categories]}
        if (f"{family}_auto", categories[0]) in table:
            rows["auto (normal images), oracle Dice"] = [
                _cell(_dice(table, f"{family}_auto", c)) for c in categories
            ]
            rows["auto, deployable M̂ > 0 Dice"] = [
                _cell(_values(table, f"{family}_auto", c, "dice_mask_rule_mean"))
                for c in categories
            ]
        if len(lambda_grid(table, family)) > 1 and len(table[family, categories[0]]) > 1:
            cv = [cross_validated(table, family, c) for c in categories]
            rows["labelled CV, oracle Dice"] = [_cell(s) for s, _ in cv]
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


def _values(table: dict, model: str, category: str, key: str) -> list[Any]:
    return [r.get(key) for r in table.get((model, category), {}).values()]


def _dice(table: dict, model: str, category: str) -> list[Any]:
    return _values(table, model, category, DICE)


def _paired(a: list[Any], b: list[Any]) -> tuple[str, float, float, int]:
    """ "ahead" when a - b exceeds the draws' sd of a - b in every draw, "behind" when it is below
    minus that sd in every draw, else "level"; with the mean and sd of a - b."""
    diffs = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not diffs:
        return "level", float("nan"), float("nan"), 0
    mean, sd = _mean_sd(diffs)
    margin = max(sd, MIN_EFFECT)
    if len(diffs) > 1 and all(d > margin for d in diffs):
        return "ahead", mean, sd, len(diffs)
    if len(diffs) > 1 and all(d < -margin for d in diffs):
        return "behind", mean, sd, len(diffs)
    return "level", mean, sd, len(diffs)


def verdict(
    table: dict, better: str, worse: str, categories: list[str], flag_all: dict | None = None
) -> tuple[str, str]:
    """Paired over draws: the difference of oracle Dice (averaged over ``categories``). Where the
    flag-every-pixel Dice is known and neither method is ahead of it, the claim cannot be told:
    both found nothing, and their difference is noise of the map's ties, not of detection."""
    a = _category_means(table, better, categories, DICE)
    b = _category_means(table, worse, categories, DICE)
    result, mean, sd, n = _paired(a, b)
    if n == 0:
        return "cannot tell", "no paired draws"
    text = f"Δ = {mean:+.3f} (sd over {n} draws {sd:.3f}; {better} {_cell(a)}, {worse} {_cell(b)})"
    chance = _flag_all_means(flag_all or {}, categories)
    known = len(chance) == len(a) and None not in chance
    if known and all(_paired(m, chance)[0] != "ahead" for m in (a, b)):
        return "cannot tell", f"{text}; neither is ahead of flagging every pixel {_cell(chance)}"
    return {"ahead": "holds", "behind": "does not hold", "level": "cannot tell"}[result], text


def claims(
    table: dict,
    categories: list[str],
    flag_all: dict | None = None,
    other_seed: tuple[str, dict] | None = None,
) -> list[str]:
    """One line per claim of the paper with its verdict; with ``other_seed`` (a label and a table
    of the same draws whose GAN rows come from another GAN seed) also the verdict there."""
    checks = []
    if LARGE in categories:
        checks.append(("RGI beats AnoGAN clearly on large defects", "rgi", "anogan", [LARGE]))
    for other in ("rgi", "anogan"):
        for c in categories:
            checks.append((f"R-RGI improves on {other} ({c})", "rrgi", other, [c]))
    for other in ("rasl", "draem", "patchcore"):
        checks.append((f"R-RGI beats {other} (mean over categories)", "rrgi", other, categories))
    head = ["claim", "verdict", "evidence (oracle Dice)"]
    if other_seed is not None:
        head += [f"verdict, {other_seed[0]}", f"evidence, {other_seed[0]}"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for text, better, worse, cats in checks:
        if (better, cats[0]) in table and (worse, cats[0]) in table:
            result, evidence = verdict(table, better, worse, cats, flag_all)
            cells = [text, f"**{result}**", evidence]
            other = other_seed[1] if other_seed is not None else {}
            if (better, cats[0]) in other and (worse, cats[0]) in other:
                result, evidence = verdict(other, better, worse, cats, flag_all)
                cells += [f"**{result}**", evidence]
            elif other_seed is not None:
                cells += ["–", "not run with that seed"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def other_seed_table(
    rows: list[dict[str, Any]], other_seed: list[dict[str, Any]]
) -> tuple[str, dict] | None:
    """The table of another GAN seed's runs, completed with this run's rows of the generator-free
    baselines they lack (the same whatever the GAN seed; never this seed's GAN rows), when they
    cover every draw of this run; else None (a verdict needs the same paired draws)."""
    draws = {r["dataset"] for r in rows}
    if not other_seed or {r["dataset"] for r in other_seed} != draws:
        return None
    theirs = {r["model"] for r in other_seed}
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in other_seed}))
    shared = [r for r in rows if r["model"] in BASELINE_MODELS and r["model"] not in theirs]
    merged = other_seed + shared
    return f"GAN seed {seeds}", index(merged)


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
        means = _category_means(table, method, categories, DICE)
        spread = _mean_sd([v for v in means if v is not None])[1]
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
    methods = [m for m in MAIN_METHODS if (m, categories[0]) in table]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", type=Path)
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
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    rows, taken = merge_baselines(
        load_runs(args.run_dirs), args.run_dirs, args.baselines, tuple(args.baseline_models)
    )
    other_seed = None
    if args.gan_seed_runs:
        other_seed, _ = merge_baselines([], args.run_dirs, args.gan_seed_runs, MAIN_METHODS)
    command = "python benchmarks/table2.py " + " ".join(argv)
    text = report(rows, args.run_dirs, command, tuple(taken), other_seed)
    if args.out is None:
        print(text)
        return 0
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
