"""Mask-free inpainting, the paper's Table 1 protocol on data we have -> docs/results/inpainting.md.

A GAN (Rgi, the models' default whole-image generator) is trained on defect-free images; held-out
clean images are corrupted as in the paper's Appendix D, and every method restores them through
the one solver (``rgi_anomalib.inpaint``):

- corruptions: a central block missing (25 % of the area) and random missing pixels (25 %), the
  missing entries filled with N(-1, 1) noise clipped to the generator's [-1, 1] range;
- methods: l2 inversion without mask (Yeh et al. 2017 w/o mask), l2 inversion with the true mask
  (Yeh w/ mask), the same plus generator fine-tuning (Pan et al. 2021, w/ mask), RGI, R-RGI;
- metrics (torchmetrics): PSNR and SSIM of the restoration against the clean image, median over
  the test images (the authors' statistic), and the Dice of M̂ > 0.5 against the corruption mask;
- λ of RGI / R-RGI chosen on a separate validation split of corrupted images (best median PSNR),
  never on the test images.

    python benchmarks/inpainting.py --data standin --size 64
    python benchmarks/inpainting.py --data elpv --size 64 --report docs/results/inpainting.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
# The plain GAN of docs/results/inpainting.md (measured before the encoder became the default).
ARCH = {"latent_dim": 64, "base_width": 16, "max_width": 128, "encoder_weight": 0.0}
LAMBDAS = (0.05, 0.1, 0.2, 0.4)
# Per-method solve: objective, generator fine-tuning (R-RGI's fast defaults), known mask given.
METHODS: dict[str, dict[str, Any]] = {
    "Yeh w/o mask (l2)": {"objective": "l2", "finetune": False, "known_mask": False},
    "Yeh w/ mask": {"objective": "l2", "finetune": False, "known_mask": True},
    "Pan w/ mask (fine-tuned G)": {"objective": "l2", "finetune": True, "known_mask": True},
    "RGI": {"objective": "rgi", "finetune": False, "known_mask": False},
    "R-RGI": {"objective": "rgi", "finetune": True, "known_mask": False},
}


def corrupt(
    clean: torch.Tensor, kind: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupted images in [0, 1] and the missing mask (B×1×H×W, 1 = corrupted)."""
    batch, _, height, width = clean.shape
    missing = torch.zeros(batch, 1, height, width)
    if kind == "block":  # central square of half the side: 25 % of the area
        top, left = height // 4, width // 4
        missing[:, :, top : top + height // 2, left : left + width // 2] = 1
    elif kind == "pixels":
        missing = (torch.rand(batch, 1, height, width, generator=generator) < 0.25).float()
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    noise = (torch.randn(clean.shape, generator=generator) - 1).clamp(-1, 1) * 0.5 + 0.5
    return clean * (1 - missing) + noise * missing, missing


def _images(paths: list[Path]) -> torch.Tensor:
    from anomalib.data.utils import read_image

    return torch.stack([read_image(p, as_tensor=True) for p in paths])


def _data(args: argparse.Namespace) -> dict[str, list[Path]]:
    import synthetic_btad

    root = args.work / f"data_{args.data}{args.size}"
    total = args.n_train + args.n_val + args.n_test
    if not synthetic_btad.is_dataset(root):
        synthetic_btad.build_dataset(
            root,
            bases="elpv" if args.data == "elpv" else "standin",
            size=args.size,
            seed=0,
            n_train=total,
            n_test_per_category=1,
        )
    # Held-out clean images: the last training images, never seen by the GAN.
    images = sorted((root / "train" / "good").glob("*.png"))[:total]
    return {
        "train": images[: args.n_train],
        "val": images[args.n_train : args.n_train + args.n_val],
        "test": images[args.n_train + args.n_val :],
    }


def _fit(args: argparse.Namespace, train: list[Path]) -> Path:
    from lightning.pytorch import seed_everything

    from rgi_anomalib.benchmark.images import image_loader
    from rgi_anomalib.engine import cpu_engine
    from rgi_anomalib.models import Rgi
    from rgi_anomalib.models.gan_inversion.flat_args import nest_flat_args as nested

    ckpt = args.work / f"rgi_{args.data}{args.size}_e{args.epochs}.ckpt"
    if ckpt.is_file():
        return ckpt
    seed_everything(0, verbose=False)
    model = Rgi(
        **nested(image_size=args.size, max_epochs=args.epochs, sample_every_n_epochs=0, **ARCH)
    )
    engine = cpu_engine(args.work / "engine", label=f"rgi {args.data}", limit_val_batches=0)
    engine.fit(model=model, train_dataloaders=image_loader(train, None, 0, 32, shuffle=True))
    engine.trainer.save_checkpoint(ckpt)
    return ckpt


def _config(model: Any, method: dict[str, Any], lam: float) -> Any:
    from rgi_anomalib.models import RRgi
    from rgi_anomalib.models.gan_inversion.flat_args import nest_flat_args as nested

    base = model.model.inversion
    tuned = RRgi(
        **nested(image_size=model.model.image_size, **ARCH)
    ).model.inversion  # R-RGI defaults
    finetune = {
        "finetune_iterations": tuned.finetune_iterations if method["finetune"] else 0,
        "lr_generator": tuned.lr_generator,
    }
    return dataclasses.replace(base, objective=method["objective"], lam=lam, **finetune)


def _solve(
    model: Any, config: Any, corrupted: torch.Tensor, missing: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    from rgi_anomalib.models.gan_inversion.anomaly_map import to_grey

    start = time.perf_counter()
    restored, masks = [], []
    for i in range(0, len(corrupted), 25):
        part_missing = None if missing is None else missing[i : i + 25]
        result = model.model.invert(
            corrupted[i : i + 25] * 2 - 1, missing=part_missing, inversion=config
        )
        restored.append((result.restored * 0.5 + 0.5).clamp(0, 1))
        if result.mask is not None and config.objective == "rgi":
            masks.append(to_grey(result.mask.abs()))
    seconds = (time.perf_counter() - start) / len(corrupted)
    return torch.cat(restored), torch.cat(masks) if masks else None, seconds


def _scores(
    restored: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor | None, missing: torch.Tensor
) -> dict[str, float]:
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    psnr = peak_signal_noise_ratio(restored, clean, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(restored, clean, data_range=1.0, reduction="none")
    out = {"psnr": float(psnr.median()), "ssim": float(ssim.median())}
    if mask is not None:
        pred, gt = mask > 0.5, missing > 0.5
        inter = (pred & gt).sum(dim=(1, 2, 3)).float()
        dice = 2 * inter / (pred.sum(dim=(1, 2, 3)) + gt.sum(dim=(1, 2, 3))).clamp_min(1)
        out["dice"] = float(dice.median())
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rgi_anomalib.inpaint import load_model

    split = _data(args)
    model = load_model(_fit(args, split["train"]))
    results: dict[str, Any] = {"data": args.data, "size": args.size, "rows": []}
    for kind in ("block", "pixels"):
        grid: list[torch.Tensor] = []
        sets = {}
        for name in ("val", "test"):
            clean = _images(split[name])
            seed = torch.Generator().manual_seed(1 if name == "val" else 2)
            sets[name] = (clean, *corrupt(clean, kind, seed))
        for method_name, method in METHODS.items():
            lam = 0.4
            if method["objective"] == "rgi":  # λ by median PSNR on the validation split
                clean, corrupted, missing = sets["val"]
                by_lam = {
                    value: _scores(
                        _solve(model, _config(model, method, value), corrupted, None)[0],
                        clean,
                        None,
                        missing,
                    )["psnr"]
                    for value in LAMBDAS
                }
                lam = max(by_lam, key=by_lam.get)
            clean, corrupted, missing = sets["test"]
            config = _config(model, method, lam)
            restored, mask, seconds = _solve(
                model, config, corrupted, missing if method["known_mask"] else None
            )
            grid.append(restored[:4])
            row = {
                "corruption": kind,
                "method": method_name,
                "lam": lam if method["objective"] == "rgi" else None,
                "seconds_per_image": round(seconds, 4),
                **{k: round(v, 4) for k, v in _scores(restored, clean, mask, missing).items()},
            }
            print(json.dumps(row), flush=True)
            results["rows"].append(row)
        _save_grid(
            [sets["test"][0][:4], sets["test"][1][:4], *grid],
            args.work / f"grid_{args.data}{args.size}_{kind}.png",
        )
    return results


def _save_grid(rows: list[torch.Tensor], path: Path) -> None:
    """One row per image: clean, corrupted, then each method's restoration (METHODS order)."""
    from torchvision.utils import save_image

    from rgi_anomalib.utils import atomic_path

    columns = torch.stack(rows, dim=1)  # images × (2 + methods) × C×H×W
    with atomic_path(path) as tmp:
        save_image(columns.flatten(0, 1), tmp, nrow=len(rows), padding=2, format="png")


def report(all_results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """One table per dataset (every results_*.json of the work directory)."""
    lines = [
        "# Mask-free inpainting (paper Table 1 protocol)",
        "",
        f"Written by `{command}` (and one earlier call per dataset: every results JSON of the "
        f"work directory is reported). Per dataset: the GAN (Rgi's default whole-image "
        f"generator, `{json.dumps(ARCH)}`, {args.epochs} epochs) trained on {args.n_train} clean "
        f"images; λ of RGI / R-RGI chosen among {list(LAMBDAS)} by median PSNR on {args.n_val} "
        f"other corrupted images; {args.n_test} test images, medians. Corrupted pixels are "
        "filled with N(-1, 1) noise clipped to [-1, 1]. Dice: M̂ > 0.5 against the corruption "
        "mask. Solves: the fast defaults (50 Adam iterations; R-RGI and Pan fine-tune G over the "
        f"last 20); {torch.get_num_threads()} torch thread(s), other jobs sharing the machine.",
        "",
    ]
    for results in all_results:
        tag = f"{results['data']}{results['size']}"
        lines += [
            f"## {results['data']} at {results['size']} px",
            "",
            "Grids (rows: test images; columns: clean, corrupted, then the methods in table "
            f"order): `grid_{tag}_block.png`, `grid_{tag}_pixels.png` in the work directory.",
            "",
            "| corruption | method | λ | PSNR (dB) | SSIM | Dice of M̂ | s/image |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in results["rows"]:
            lam = "–" if row["lam"] is None else f"{row['lam']:g}"
            dice = f"{row['dice']:.3f}" if "dice" in row else "–"
            lines.append(
                f"| {row['corruption']} | {row['method']} | {lam} | {row['psnr']:.2f} | "
                f"{row['ssim']:.3f} | {dice} | {row['seconds_per_image']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("standin", "elpv"), default="standin")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-val", type=int, default=20)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "inpainting")
    p.add_argument("--report", type=Path, default=None)
    p.add_argument("--report-only", action="store_true", help="only rebuild --report")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        results = run(args)
        out = args.work / f"results_{args.data}{args.size}.json"
        out.write_text(json.dumps(results, indent=1))
    if args.report:
        from rgi_anomalib.utils import atomic_path

        command = "python benchmarks/inpainting.py " + " ".join(argv)
        found = [json.loads(f.read_text()) for f in sorted(args.work.glob("results_*.json"))]
        with atomic_path(args.report) as tmp:
            tmp.write_text(report(found, args, command))
        print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
