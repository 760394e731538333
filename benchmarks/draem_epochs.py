"""DRAEM's Dice and pixel AUROC against training epochs -> docs/results/draem.md.

DRAEM sets no epoch limit of its own (its paper trains 700 epochs on a GPU). To choose a fair CPU
budget for the benchmark rows, one DRAEM per dataset is trained through anomalib's Engine on the
quick benchmark's data (the generated stand-in at 32 px, mean-colour and loud defects, built
exactly as in configs/benchmark/quick.yaml) with DTD textures, and evaluated after each marked
epoch with the harness's own metrics (rgi_anomalib.benchmark.metrics.category_metrics).

    python benchmarks/draem_epochs.py --dtd-dir ../shared/data/dtd_subset/images \
        --epochs 1 2 4 8 12 --report docs/results/draem.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, seed_everything

REPO = Path(__file__).resolve().parents[1]
# The quick benchmark's datasets (configs/benchmark/quick.yaml).
DATASETS = {
    "sbtad32": {"size": 32, "seed": 0, "n_train": 408, "n_test_per_category": 20},
    "sbtad32_loud": {
        "size": 32,
        "seed": 0,
        "n_train": 408,
        "n_test_per_category": 20,
        "fill": "random",
    },
}
CALIBRATION = 8  # last train/good images held out, as the harness does


def _paths(root: Path) -> dict[str, Any]:
    import synthetic_btad

    train = sorted((root / "train" / "good").glob("*.png"))
    cats = {}
    for cat in synthetic_btad.load_summary(root).categories:
        images = sorted((root / "test" / cat).glob("*.png"))
        masks = [root / "ground_truth" / cat / f"{p.stem}_mask.png" for p in images]
        cats[cat] = (images, masks)
    return {
        "train": train[:-CALIBRATION],
        "calibration": train[-CALIBRATION:],
        "normal": sorted((root / "test" / "good").glob("*.png")),
        "categories": cats,
    }


class EpochMarks(Callback):
    """Evaluates the model with the harness metrics after the marked epochs."""

    def __init__(self, marks: list[int], data: dict[str, Any]) -> None:
        self.marks = set(marks)
        self.data = data
        self.points: list[dict[str, Any]] = []
        self.start = 0.0
        self.eval_seconds = 0.0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch + 1
        if epoch not in self.marks:
            return
        begin = time.perf_counter()
        fit_seconds = begin - self.start - self.eval_seconds
        point = {"epochs": epoch, "fit_seconds": round(fit_seconds, 1), **self._evaluate(pl_module)}
        self.eval_seconds += time.perf_counter() - begin
        self.points.append(point)
        print(json.dumps(point), flush=True)

    def _maps(self, pl_module: Any, paths: list[Path]) -> tuple[list[np.ndarray], list[float]]:
        from anomalib.data.utils import read_image

        images = torch.stack([read_image(p, as_tensor=True) for p in paths])
        with torch.no_grad():
            out = pl_module.model(pl_module.pre_processor(images))
        maps = out.anomaly_map.float()
        maps = maps[:, 0] if maps.ndim == 4 else maps
        return [m.numpy() for m in maps], [float(s) for s in out.pred_score.reshape(-1)]

    def _evaluate(self, pl_module: Any) -> dict[str, float]:
        from anomalib.data.utils import read_mask

        from rgi_anomalib.benchmark.metrics import category_metrics

        was_training = pl_module.training
        pl_module.eval()
        normal, normal_scores = self._maps(pl_module, self.data["normal"])
        calibration, _ = self._maps(pl_module, self.data["calibration"])
        per_cat = []
        for images, masks in self.data["categories"].values():
            maps, scores = self._maps(pl_module, images)
            gts = [read_mask(m, as_tensor=True).bool().numpy() for m in masks]
            per_cat.append(category_metrics(maps, gts, normal, calibration, scores, normal_scores))
        pl_module.train(was_training)
        keys = ("dice_oracle_mean", "pixel_auroc", "aupro", "image_auroc")
        return {k: round(float(np.mean([m[k] for m in per_cat])), 4) for k in keys}


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from anomalib.models import Draem

    import synthetic_btad
    from rgi_anomalib.benchmark.images import image_loader
    from rgi_anomalib.engine import cpu_engine

    root = args.work / name
    if not synthetic_btad.is_dataset(root):
        synthetic_btad.build_dataset(root, **DATASETS[name])
    data = _paths(root)
    seed_everything(args.seed, verbose=False)
    model = Draem(
        dtd_dir=str(args.dtd_dir),
        pre_processor=Draem.configure_pre_processor(image_size=(32, 32)),
        visualizer=False,
        evaluator=False,
    )
    marks = EpochMarks(args.epochs, data)
    engine = cpu_engine(
        args.work / "engine", label=f"draem {name}", callbacks=[marks], max_epochs=max(args.epochs)
    )
    engine.fit(
        model=model, train_dataloaders=image_loader(data["train"], None, 0, 32, shuffle=True)
    )
    n_textures = sum(1 for p in args.dtd_dir.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    return {"dataset": name, "textures": n_textures, "points": marks.points}


def report(results: list[dict[str, Any]], command: str, threads: int) -> str:
    lines = [
        "# DRAEM: Dice against training epochs (CPU)",
        "",
        f"Written by `{command}` ({threads} torch threads). The quick benchmark's data (generated "
        "stand-in, 32 px, 400 training images, 20 test images per category); DRAEM with DTD "
        f"textures ({results[0]['textures']} images), batch 32, seed 0; means over the 4 "
        "categories, metrics as in docs/benchmark.md. Fit seconds exclude evaluation.",
        "",
    ]
    for res in results:
        lines += [
            f"## {res['dataset']}",
            "",
            "| epochs | fit s | Dice oracle | pixel AUROC | AUPRO | image AUROC |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['epochs']} | {p['fit_seconds']:.0f} | {p['dice_oracle_mean']:.3f} | "
            f"{p['pixel_auroc']:.3f} | {p['aupro']:.3f} | {p['image_auroc']:.3f} |"
            for p in res["points"]
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtd-dir", type=Path, required=True, help="folder of DTD texture images")
    p.add_argument("--datasets", nargs="+", choices=tuple(DATASETS), default=list(DATASETS))
    p.add_argument("--epochs", nargs="+", type=int, default=[1, 2, 4, 8, 12])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "draem_epochs")
    p.add_argument("--report", type=Path, default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if not args.dtd_dir.is_dir():
        p.error(f"--dtd-dir {args.dtd_dir} is not a directory")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    results = [run(name, args) for name in args.datasets]
    out = args.work / "results.json"
    out.write_text(json.dumps(results, indent=1))
    if args.report:
        from rgi_anomalib.utils import atomic_path

        command = "python benchmarks/draem_epochs.py " + " ".join(argv)
        with atomic_path(args.report) as tmp:
            tmp.write_text(report(results, command, args.threads))
        print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
