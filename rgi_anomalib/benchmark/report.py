"""Write results.csv / results.json / results.md / dice_bar.png / qualitative.png atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rgi_anomalib.utils import atomic_path

# (row key, table title). The first one is the main table printed at the end.
TABLES = (
    ("dice_oracle_mean", "Dice, per-image oracle threshold (paper protocol)"),
    ("dice_dataset_mean", "Dice, one best threshold per dataset category (pixel F1-max)"),
    ("dice_label_free_mean", "Dice, label-free threshold (percentile of normal-image maps)"),
    ("dice_mask_rule_mean", "Dice, M̂ > 0 rule (RGI-family masks only)"),
    ("pixel_auroc", "Pixel AUROC (pooled)"),
    ("aupro", "AUPRO (FPR ≤ 0.3, normalised)"),
    ("image_auroc", "Image AUROC (defect vs test/good)"),
)
# Restoration under the defect (metrics.py; synthetic builds with their clean twins): (row key,
# table title, whether higher is better). Medians over a category's defect images.
RESTORATION_TABLES = (
    (
        "absorption",
        "Absorption under the defect, RMS_M(G(ẑ) − clean) / RMS_M(x − clean) "
        "(0: surface restored, 1: defect copied)",
        False,
    ),
    (
        "absorption_delta",
        "Absorption without the generator's own error, RMS_M(G(ẑ) − G(clean)) / RMS_M(x − clean)",
        False,
    ),
    ("restoration_psnr", "Restoration PSNR in the mask against the clean twin (dB)", True),
    (
        "defect_residual_ratio",
        "In-mask residual |x − G(ẑ)| over the normal images' 99th percentile (> 1: stands out)",
        True,
    ),
)
# Reconstruction-gap columns of the cost table: (row key, header). [0, 1] pixel units.
GAP_COLUMNS = (
    ("gap_rmse", "gap RMSE"),
    ("gap_p99", "gap p99"),
    ("gap_rmse_defect", "gap RMSE (defect)"),
)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _fmt(value: float, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if std is None or math.isnan(std) else f"{value:.3f} ± {std:.3f}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _finite_mean(values: Sequence[Any]) -> float:
    """Mean of the values that are numbers and not NaN (rows of older runs lack the key)."""
    finite = [float(v) for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def aggregate(rows: Sequence[dict[str, Any]], key: str) -> dict[tuple[str, str], dict[str, float]]:
    """(method label, category) -> {mean, std (over seeds, or the per-image std for 1 seed)}."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(method_label(row), row["category"])].append(row)
    out = {}
    for k, group in groups.items():
        values = [r.get(key) for r in group]
        values = [v for v in values if v is not None and not math.isnan(v)]
        if not values:
            out[k] = {"mean": math.nan, "std": math.nan}
        elif len(group) == 1:
            std_key = key.replace("_mean", "_std")
            std = group[0].get(std_key) if std_key != key else None
            out[k] = {"mean": values[0], "std": math.nan if std is None else std}
        else:
            out[k] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return out


def method_label(row: dict[str, Any]) -> str:
    label = row["model"]
    if row.get("_multi_dataset"):
        label += f" [{row['dataset']}]"
    return f"{label} ({row['form']})" if row.get("form") else label


def markdown_table(
    rows: Sequence[dict[str, Any]], key: str, title: str, higher_is_better: bool = True
) -> str:
    agg = aggregate(rows, key)
    pick = max if higher_is_better else min
    methods = list(dict.fromkeys(method_label(r) for r in rows))
    cats = list(dict.fromkeys(r["category"] for r in rows))
    best = {}
    for cat in [*cats, "mean"]:
        vals = []
        for m in methods:
            if cat == "mean":
                v = [agg[(m, c)]["mean"] for c in cats if (m, c) in agg]
                v = [x for x in v if not math.isnan(x)]
                vals.append(float(np.mean(v)) if len(v) == len(cats) else math.nan)
            else:
                vals.append(agg.get((m, cat), {"mean": math.nan})["mean"])
        finite = [x for x in vals if not math.isnan(x)]
        best[cat] = (pick(finite) if finite else None, vals)
    lines = [
        f"### {title}",
        "",
        "| method | " + " | ".join([*cats, "mean"]) + " |",
        "|---" * (len(cats) + 2) + "|",
    ]
    for i, m in enumerate(methods):
        cells = []
        for cat in [*cats, "mean"]:
            top, vals = best[cat]
            value = vals[i]
            std = agg[(m, cat)]["std"] if cat != "mean" and (m, cat) in agg else None
            text = _fmt(value, std)
            finite = [v for v in vals if not math.isnan(v)]
            tie = len(set(finite)) == 1
            if top is not None and not math.isnan(value) and value == top and not tie:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dataset_tables(
    rows: Sequence[dict[str, Any]], key: str, title: str, higher_is_better: bool = True
) -> str:
    """``markdown_table``, one per dataset when there are several (best values per dataset)."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if len(datasets) == 1:
        return markdown_table(rows, key, title, higher_is_better)
    return "\n".join(
        markdown_table(
            [{**r, "_multi_dataset": False} for r in rows if r["dataset"] == d],
            key,
            f"{title} · dataset {d}",
            higher_is_better,
        )
        for d in datasets
    )


def _measured(rows: Sequence[dict[str, Any]], key: str) -> bool:
    """Whether any row holds a number for ``key`` (older runs' rows lack newer keys)."""
    return any(r.get(key) is not None and not math.isnan(r[key]) for r in rows)


def restoration_section(rows: Sequence[dict[str, Any]]) -> str:
    """The restoration-under-the-defect tables, or "" when no row measured them (no model that
    restores, or no clean twins: not a synthetic_btad build with test/good, or an older run)."""
    tables = [
        dataset_tables(rows, key, title, higher)
        for key, title, higher in RESTORATION_TABLES
        if _measured(rows, key)
    ]
    if not tables:
        return ""
    intro = (
        "### Restoration under the defect\n\n"
        "Does G(ẑ) show the clean surface under the defect (the paper's Theorem 1)? Per defect "
        "image, over its mask, in [0, 1] pixel units at the scoring resolution, against the "
        "image's clean twin (synthetic builds with test/good); median over the category's defect "
        "images (absorption_mean in results.json: the mean). n/a: the model exposes no "
        "restoration, or the dataset has no clean twins. Best per column in bold (lowest "
        "absorption). Definitions: rgi_anomalib/benchmark/metrics.py.\n"
    )
    return "\n".join([intro, *tables])


def results_markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    parts = [
        "# Benchmark results",
        "",
        f"Config: `{meta.get('config_source', '')}` · image size {meta.get('image_size')} · "
        f"seeds {meta.get('seeds')} · run time {meta.get('seconds', 0):.0f} s",
        "",
        "Cells: mean ± std over defect images (one seed) or over seeds. Best per column in bold. "
        "Definitions: docs/benchmark.md.",
        "",
    ]
    for key, title in TABLES:
        if _measured(rows, key):
            parts.append(dataset_tables(rows, key, title))
    restoration = restoration_section(rows)
    if restoration:
        parts.append(restoration)
    headers = ["method", "fit s", "test s / image", *(title for _, title in GAP_COLUMNS)]
    timing = ["### Cost", "", "| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
    for m in dict.fromkeys(method_label(r) for r in rows):
        rs = [r for r in rows if method_label(r) == m]
        shared = rs[0].get("fit_from")
        fit = f"{np.mean([r['fit_seconds'] for r in rs]):.1f}"
        gaps = [_fmt(_finite_mean([r.get(key) for r in rs])) for key, _ in GAP_COLUMNS]
        timing.append(
            f"| {m} | {fit + f' (shared: {shared})' if shared else fit} | "
            f"{np.mean([r['test_seconds_per_image'] for r in rs]):.3f} | " + " | ".join(gaps) + " |"
        )
    timing += [
        "",
        "gap: RMSE and 99th percentile of x − G(ẑ) in [0, 1] pixel units, mean over test/good "
        "(defect: over the categories' defect images); n/a for models without a restoration.",
    ]
    parts.append("\n".join(timing) + "\n")
    if meta.get("notes"):
        parts.append("### Notes\n\n" + "\n".join(f"- {n}" for n in meta["notes"]) + "\n")
    return "\n".join(parts)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("_")))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _clean(row.get(k)) for k in keys})
    _write_text(path, buf.getvalue())


def write_json(path: Path, rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> None:
    data = {
        "meta": meta,
        "rows": [{k: _clean(v) for k, v in r.items() if not k.startswith("_")} for r in rows],
    }
    _write_text(path, json.dumps(data, indent=2, default=str, allow_nan=False))


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def dice_bar(path: Path, rows: Sequence[dict[str, Any]], key: str = "dice_oracle_mean") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(rows, key)
    methods = list(dict.fromkeys(method_label(r) for r in rows))
    cats = list(dict.fromkeys(r["category"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cats) + 2), 4))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(cats))
    for i, m in enumerate(methods):
        means = [agg.get((m, c), {"mean": math.nan})["mean"] for c in cats]
        stds = [agg.get((m, c), {"std": math.nan})["std"] for c in cats]
        stds = [0 if math.isnan(s) else s for s in stds]
        means = [0 if math.isnan(v) else v for v in means]
        ax.bar(
            x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=m
        )
    ax.set_xticks(x, cats)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice (per-image oracle threshold)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save_figure(fig, path)


def qualitative_grid(path: Path, qualitative: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """Rows: (category, image); columns: input, ground truth, then per method restored + mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    methods = list(qualitative)
    if not methods:
        return
    first = qualitative[methods[0]]
    keys = [(cat, i) for cat, samples in first.items() for i in range(len(samples))]
    if not keys:
        return
    has_restored = {
        m: any(s["restored"] is not None for c in qualitative[m].values() for s in c)
        for m in methods
    }
    columns = ["input", "ground truth"]
    for m in methods:
        if has_restored[m]:
            columns.append(f"{m}\nrestored")
        columns.append(f"{m}\nmask")
    fig, axes = plt.subplots(
        len(keys), len(columns), figsize=(1.5 * len(columns), 1.5 * len(keys)), squeeze=False
    )
    for r, (cat, i) in enumerate(keys):
        sample = first[cat][i]
        size = sample["map"].shape[::-1]
        image = np.asarray(Image.open(sample["path"]).convert("RGB").resize(size))
        panels = [image, sample["gt"]]
        for m in methods:
            samples = qualitative[m].get(cat, [])
            s = samples[i] if i < len(samples) else None
            if has_restored[m]:
                panels.append(s["restored"] if s is not None else None)
            panels.append(s["pred"] if s is not None else None)
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.axis("off")
            if panel is not None:
                ax.imshow(panel, cmap="gray" if np.ndim(panel) == 2 else None, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(columns[c], fontsize=6)
        axes[r, 0].text(-2, size[1] / 2, cat, fontsize=6, rotation=90, ha="right", va="center")
    _save_figure(fig, path)


def write_outputs(
    run_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any], qualitative: dict[str, Any]
) -> str:
    """Write every output file; return the main table (markdown)."""
    if len({r["dataset"] for r in rows}) > 1:
        for r in rows:
            r["_multi_dataset"] = True
    write_csv(run_dir / "results.csv", rows)
    write_json(run_dir / "results.json", rows, meta)
    _write_text(run_dir / "results.md", results_markdown(rows, meta))
    dice_bar(run_dir / "dice_bar.png", rows)
    qualitative_grid(run_dir / "qualitative.png", qualitative)
    return dataset_tables(rows, *TABLES[0])
