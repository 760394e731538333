"""Statistics over draws and the paper's claims, each decided on paired draws."""

from __future__ import annotations

import math
import statistics
from typing import Any

from .runs import BASELINE_MODELS, index

DICE = "dice_oracle_mean"

LARGE = "mixed_large"

# A Dice difference smaller than this is called level whatever its spread: with 2-3 draws a
# near-constant difference has a tiny sd, and 0.001 Dice would otherwise "hold".
MIN_EFFECT = 0.01


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd; with an infinite value (an in-mask PSNR of a perfect restoration)
    the mean is that infinity and the sd NaN (``statistics.stdev`` raises on it)."""
    if not all(math.isfinite(v) for v in values):
        return statistics.fmean(values), math.nan
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def cell(values: list[float | None]) -> str:
    present = [v for v in values if number(v) is not None]
    if not present:
        return "–"
    mean, sd = mean_sd(present)
    return f"{mean:.3f} ± {sd:.3f}"


def number(value: Any) -> Any:
    """``value``, with NaN (a row's "not measured", e.g. PatchCore's gap) as None."""
    return None if isinstance(value, float) and math.isnan(value) else value


def values(table: dict, model: str, category: str, key: str) -> list[Any]:
    return [number(r.get(key)) for r in table.get((model, category), {}).values()]


def dice(table: dict, model: str, category: str) -> list[Any]:
    return values(table, model, category, DICE)


def category_means(table: dict, method: str, categories: list[str], key: str) -> list[Any]:
    """Per draw, the mean over categories (None where a value is missing)."""
    draws = sorted(set().union(*(table[method, c].keys() for c in categories)))
    out = []
    for draw in draws:
        values = [number(table[method, c].get(draw, {}).get(key)) for c in categories]
        out.append(None if None in values else statistics.fmean(values))
    return out


def flag_all_means(flag_all: dict, categories: list[str]) -> list[Any]:
    """Per draw (sorted), the flag-every-pixel Dice averaged over ``categories``."""
    draws = sorted(set().union(*(flag_all.get(c, {}).keys() for c in categories)))
    values = [[flag_all.get(c, {}).get(d) for c in categories] for d in draws]
    return [None if None in v else statistics.fmean(v) for v in values]


def paired(a: list[Any], b: list[Any]) -> tuple[str, float, float, int]:
    """ "ahead" when a - b exceeds the draws' sd of a - b in every draw, "behind" when it is below
    minus that sd in every draw, else "level"; with the mean and sd of a - b."""
    diffs = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not diffs:
        return "level", float("nan"), float("nan"), 0
    mean, sd = mean_sd(diffs)
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
    a = category_means(table, better, categories, DICE)
    b = category_means(table, worse, categories, DICE)
    result, mean, sd, n = paired(a, b)
    if n == 0:
        return "cannot tell", "no paired draws"
    text = f"Δ = {mean:+.3f} (sd over {n} draws {sd:.3f}; {better} {cell(a)}, {worse} {cell(b)})"
    chance = flag_all_means(flag_all or {}, categories)
    known = len(chance) == len(a) and None not in chance
    if known and all(paired(m, chance)[0] != "ahead" for m in (a, b)):
        return "cannot tell", f"{text}; neither is ahead of flagging every pixel {cell(chance)}"
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
