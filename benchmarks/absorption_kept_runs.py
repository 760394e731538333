"""Research script: absorption under the defect on Table 2 runs (issue 33), from their samples.

Reads the run directories given on the command line, one per draw, named after it
(``runs/benchmark/elpv_table2/elpv_s0`` ...: a full run, or one restored from a tarball of it, see
docs/results/README.md). The repository's kept runs (``benchmarks/kept_runs/``) hold rows only,
no samples, since issue 34. A run holds, per method and category, the first
``qualitative_images`` (2) defect images' restoration G(ẑ) and mask at 128 px
(``work/<model>_<draw>_seed0/samples.npz``), not the input images. Those come from the draw's
dataset, rebuilt here from the config's build entry (same parameters, same bytes; the kept masks
are checked pixel for pixel against the rebuild). Test image i of every category is pasted on
the same base cell i, whose clean copy is ``test/good/<i>.png``. Per image, over its mask M, in
[0, 1] units (rgi_anomalib/benchmark/metrics.py):

- absorption: RMS_M(G(ẑ) − clean) / RMS_M(x − clean), the harness's definition (0: the surface
  restored, 1: the defect copied). It includes the generator's own error on the clean cell.
- the issue's proxy: RMS_M(G(ẑ) − G_B) / RMS_M(x − clean), where G_B is the restoration of the same
  cell i in another category B whose mask does not touch M (4 px apart): it stands in for
  G(clean), so the generator's error on the clean cell cancels and what is left is how far the
  restoration moved with the defect (the harness's absorption_delta, with G_B for G(clean)).
  Averaged over every such B; left out when there is none.

Medians and means over the 2 images × 3 draws of each category::

    python benchmarks/link_shared_data.py          # the MVTec masks the builds use
    python benchmarks/absorption_kept_runs.py runs/benchmark/elpv_table2/elpv_s{0,1,2} \\
        --datasets /tmp/elpv_draws
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rgi_anomalib.benchmark.metrics import absorption_ratio, masked_rms  # noqa: E402

CONFIG = REPO / "configs" / "benchmark" / "elpv_table2.yaml"
GAN_METHODS = ("anogan", "rgi", "rrgi", "rgi_auto", "rrgi_auto", "rgi_lam0.005", "rgi_lam0.02",
               "rgi_lam0.1")  # fmt: skip
APART = 4  # px: B's mask grown by this much must not touch A's


def build_entries(config: Path) -> dict[str, dict]:
    return {d["name"]: d["build"] for d in yaml.safe_load(config.read_text())["datasets"]}


def dataset(root: Path, draw: str, build: dict, mvtec_root: Path | None) -> Path:
    """The draw's dataset under ``root``, built from the config's entry if it is not there."""
    import synthetic_btad

    out = root / draw
    if not synthetic_btad.is_dataset(out):
        params = dict(build)
        if params.get("mvtec_root"):
            params["mvtec_root"] = str(mvtec_root or REPO / params["mvtec_root"])
        print(f"building {draw} in {out}", file=sys.stderr)
        synthetic_btad.build_dataset(out, **params)
    return out


def samples(path: Path) -> dict[str, list[dict]]:
    """category -> [{path, gt, restored}] of one kept unit."""
    out: dict[str, list[dict]] = {}
    with np.load(path) as arrays:
        for name in arrays.files:
            cat, index, field = name.split("/")
            items = out.setdefault(cat, [])
            while len(items) <= int(index):
                items.append({})
            items[int(index)][field] = arrays[name]
    return out


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(px):
        padded = np.pad(grown, 1)
        grown = (padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1]
                 | padded[1:-1, :-2] | padded[1:-1, 2:])  # fmt: skip
    return grown


def measure(unit: dict[str, list[dict]], root: Path) -> dict[str, dict[str, list[float]]]:
    """category -> {absorption: [...], proxy: [...]} over the unit's sample images."""
    out: dict[str, dict[str, list[float]]] = {}
    for cat, items in unit.items():
        values = out.setdefault(cat, {"absorption": [], "proxy": []})
        for i, item in enumerate(items):
            if "restored" not in item:
                continue
            name = Path(str(item["path"])).name
            x = _rgb(root / "test" / cat / name)
            clean = _rgb(root / "test" / "good" / name)
            mask_file = root / "ground_truth" / cat / f"{Path(name).stem}_mask.png"
            truth = np.asarray(Image.open(mask_file))
            if not np.array_equal(truth > 0, item["gt"]):
                raise SystemExit(f"{root}: {cat}/{name}'s mask differs from the kept run's")
            mask, restored = item["gt"], item["restored"].astype(np.float64)
            values["absorption"].append(absorption_ratio(x, restored, clean, mask))
            defect = masked_rms(x - clean, mask)
            proxies = [
                masked_rms(restored - other[i]["restored"], mask) / defect
                for b, other in unit.items()
                if b != cat and i < len(other) and "restored" in other[i]
                and not (_grow(other[i]["gt"], APART) & mask).any()
            ]  # fmt: skip
            values["proxy"].append(statistics.fmean(proxies) if proxies else math.nan)
    return out


def _stat(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "–"
    return f"{statistics.median(finite):.2f} / {statistics.fmean(finite):.2f} (n {len(finite)})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="run dirs, one per draw, named after it")
    p.add_argument("--datasets", type=Path, required=True, help="where the draws are (built)")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--mvtec-root", type=Path, help="override the config's mvtec_root")
    args = p.parse_args(argv)
    builds = build_entries(args.config)
    per_method: dict[str, dict[str, dict[str, list[float]]]] = {}
    for draw_dir in sorted(args.runs):
        draw = draw_dir.name
        root = dataset(args.datasets, draw, builds[draw], args.mvtec_root)
        for method in GAN_METHODS:
            path = draw_dir / "work" / f"{method}_{draw}_seed0" / "samples.npz"
            if not path.is_file():
                continue
            for cat, values in measure(samples(path), root).items():
                into = per_method.setdefault(method, {}).setdefault(cat, {})
                for key, v in values.items():
                    into.setdefault(key, []).extend(v)
    if not per_method:
        raise SystemExit(
            "absorption_kept_runs: no work/<method>_<draw>_seed0/samples.npz in "
            + ", ".join(map(str, args.runs))
        )
    cats = list(next(iter(per_method.values())))
    print("Absorption under the defect on the kept runs: median / mean (n images) per category")
    print(f"draws: {', '.join(sorted(d.name for d in args.runs))}\n")
    for key, title in (("absorption", "absorption RMS_M(G − clean) / RMS_M(x − clean)"),
                       ("proxy", "issue's proxy RMS_M(G − G_B) / RMS_M(x − clean)")):  # fmt: skip
        print(f"## {title}\n")
        print("| method | " + " | ".join(cats) + " |")
        print("|---" * (len(cats) + 1) + "|")
        for method, by_cat in per_method.items():
            cells = [_stat(by_cat.get(c, {}).get(key, [])) for c in cats]
            print(f"| {method} | " + " | ".join(cells) + " |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
