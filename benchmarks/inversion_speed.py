"""Paper protocol vs fast defaults for RGI / R-RGI inversion, side by side in one run.

Usage:
    python benchmarks/train_gan.py --data /tmp/sbtad32 --out /tmp/rgi_gan32.pt   # once
    python benchmarks/inversion_speed.py --data /tmp/sbtad32 --ckpt /tmp/rgi_gan32.pt \
        --per-category 4 --threads 2 --out docs/results/inversion_speed.md

Every variant solves the same test images with the same generator. Batched solves are exactly
separable (per-image losses, element-wise Adam), so the paper protocol's Dice is computed from a
batch solve; its batch-1 cost is timed on a few images (``--paper-b1-iters`` iterations, then
scaled linearly to the full iteration count: the per-iteration cost is constant without early
stopping). Peak memory is the process's VmHWM (reset before each variant via /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rgi_anomalib.benchmark.metrics import best_pooled_threshold, oracle_dice
from rgi_anomalib.models.gan_inversion.anomaly_map import anomaly_map
from rgi_anomalib.models.gan_inversion.lightning_model import Rgi, RRgi
from rgi_anomalib.models.gan_inversion.networks import Generator
from rgi_anomalib.models.gan_inversion.solver import (
    CandidatePool,
    InversionConfig,
    data_term,
    invert,
)
from rgi_anomalib.models.gan_inversion.torch_model import GanInversionModel

CATEGORIES = ("crack", "irregular", "mixed_large", "scratch")


# ------------------------------------------------------------------------------------- data
def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())


def load_test_set(root: Path, per_category: int, repaint: bool = False) -> dict[str, torch.Tensor]:
    """The first ``per_category`` defect images of each category, their masks and clean twins."""
    images, gts, clean = [], [], []
    for cat in CATEGORIES:
        files = sorted((root / "test" / cat).glob("*.png"))[:per_category]
        for f in files:
            images.append(_load(f))
            gts.append(np.asarray(Image.open(root / "ground_truth" / cat / f"{f.stem}_mask.png")))
            good = root / "test" / "good" / f.name
            clean.append(_load(good) if good.exists() else None)
    to_t = lambda xs: torch.stack(xs).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # noqa: E731
    has_clean = all(c is not None for c in clean)
    data = {
        "images": to_t(images),
        "gt": torch.from_numpy(np.stack(gts) > 127),
        "clean": to_t(clean) if has_clean else None,
    }
    if repaint:
        data["images"] = repaint_defects(data["clean"], data["gt"])
    return data


def repaint_defects(clean: torch.Tensor, gt: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Loud defects on the clean twins, inside the dataset's masks, filled with one random
    colour c ∈ [-1, 1]³ per image (``--repaint``; the default keeps the dataset's mean-colour
    fill)."""
    colour = torch.rand(len(clean), 3, 1, 1, generator=torch.Generator().manual_seed(seed))
    painted = (colour * 2 - 1).expand_as(clean)
    return torch.where(gt[:, None], painted, clean)


def load_generator(ckpt: Path) -> torch.nn.Module:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model = GanInversionModel(inversion=InversionConfig(), **state["arch"])
    model.load_state_dict(state["state_dict"])
    return model.generator_ema.eval()


# ------------------------------------------------------------------------------------- metrics
def _peak_rss_reset() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def score(data: dict, masks: torch.Tensor, restored: torch.Tensor) -> dict[str, float]:
    maps = masks[:, 0].numpy()
    gts = data["gt"].numpy()
    oracle = [oracle_dice(m, g) for m, g in zip(maps, gts, strict=True)]
    pooled, _ = best_pooled_threshold(list(maps), list(gts))
    rmse = math.nan
    if data["clean"] is not None:
        bg = (~data["gt"])[:, None].expand_as(restored)
        diff = ((restored - data["clean"]) / 2)[bg]  # [0, 1] pixel units
        rmse = float(diff.pow(2).mean().sqrt())
    return {"dice_oracle": float(np.mean(oracle)), "dice_pooled": pooled, "rmse_bg": rmse}


def run_variant(generator, data, config: InversionConfig, batch: int, pool: CandidatePool):
    images = data["images"]
    masks, restored, its, objective = [], [], [], []
    joint = dataclasses.replace(config, objective="rgi", mask_update="closed_form")
    _peak_rss_reset()
    start = time.perf_counter()
    for part in images.split(batch):
        result = invert(generator, part, config, pool=pool)
        masks.append(anomaly_map(part, result))
        restored.append(result.restored)
        its.append(result.iterations_run)
        # Eq. 3 at the final ẑ with the best M for it (= the joint problem's value at ẑ).
        objective.append(data_term(part, result.restored, joint))
    elapsed = time.perf_counter() - start
    out = score(data, torch.cat(masks), torch.cat(restored))
    out.update(
        s_per_image=elapsed / len(images),
        peak_mib=_peak_rss_mib(),
        objective=float(torch.cat(objective).mean()),
        iterations=f"{min(its)}-{max(its)}" if min(its) != max(its) else str(its[0]),
    )
    return out


def time_per_image(generator, images, config, batch, pool) -> float:
    start = time.perf_counter()
    for part in images.split(batch):
        invert(generator, part, config, pool=pool)
    return (time.perf_counter() - start) / len(images)


# ------------------------------------------------------------------------------------- floor
def generator_flops(generator: torch.nn.Module, latent_dim: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        generator(torch.zeros(1, latent_dim))
    return counter.get_total_flops()


def matmul_rate(n: int = 512, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# ------------------------------------------------------------------------------------- configs
def method_config(cls, **over) -> InversionConfig:
    """The InversionConfig a Lightning model class builds with its current defaults."""
    return dataclasses.replace(cls(image_size=32).inversion, **over)


PAPER_RGI = InversionConfig.paper("rgi")
PAPER_RRGI = InversionConfig.paper("rrgi")


def variants(batch: int, with_paper_rrgi: bool = True) -> list[tuple[str, InversionConfig, int]]:
    fast_rgi, fast_rrgi = method_config(Rgi), method_config(RRgi)
    rep = dataclasses.replace
    rows = [
        ("RGI paper (Adam M, 2000 it)", PAPER_RGI, batch),
        ("RGI closed-form M, 2000 it", rep(PAPER_RGI, mask_update="closed_form"), batch),
        ("RGI Adam M, 100 it, constant lr", rep(PAPER_RGI, iterations=100), batch),
        (
            "RGI closed-form M, 100 it, cosine",
            rep(PAPER_RGI, iterations=100, mask_update="closed_form", lr_schedule="cosine"),
            batch,
        ),
        (
            "RGI closed-form M, 300 it, early stop 20",
            rep(PAPER_RGI, iterations=300, mask_update="closed_form", early_stop_patience=20),
            batch,
        ),
        ("RGI Adam M, 100 it, cosine", rep(fast_rgi, iterations=100), batch),
        ("**RGI default**", fast_rgi, batch),
        ("RGI default, batch 1", fast_rgi, 1),
        ("R-RGI paper (ft 1500 it, lr 1e-5)", PAPER_RRGI, batch),
        (
            "R-RGI 100 it, ft 40 at lr 1e-4",
            rep(fast_rrgi, iterations=100, finetune_iterations=40, lr_generator=1e-4),
            batch,
        ),
        (
            "R-RGI default, ft last 2 layers only",
            rep(fast_rrgi, finetune_params=("to_image", "blocks.3")),
            batch,
        ),
        ("**R-RGI default**", fast_rrgi, batch),
    ]
    if not with_paper_rrgi:
        rows = [r for r in rows if r[1] is not PAPER_RRGI]
    return rows


def extrapolated_time(generator, images, config, batch, pool, k: int) -> float:
    """s/image of a full ``config.iterations`` solve from timed 1- and k-iteration solves (the
    per-iteration cost is constant without early stopping): t1 + (tk − t1)·(N − 1)/(k − 1)."""
    fixed = dataclasses.replace(config, early_stop_patience=0)
    n_full, ft = fixed.iterations, fixed.finetune_iterations
    if ft:  # time the two phases separately
        plain = dataclasses.replace(fixed, finetune_iterations=0)
        t1 = time_per_image(generator, images, rep_its(plain, 1), batch, pool)
        tk = time_per_image(generator, images, rep_its(plain, k), batch, pool)
        tf = time_per_image(generator, images, rep_its(fixed, k, k), batch, pool)
        per_it, per_ft = (tk - t1) / (k - 1), (tf - t1) / (k - 1)
        return t1 + per_it * (n_full - ft - 1) + per_ft * ft
    t1 = time_per_image(generator, images, rep_its(fixed, 1), batch, pool)
    tk = time_per_image(generator, images, rep_its(fixed, k), batch, pool)
    return t1 + (tk - t1) * (n_full - 1) / (k - 1)


def rep_its(config: InversionConfig, its: int, ft: int = 0) -> InversionConfig:
    return dataclasses.replace(config, iterations=its, finetune_iterations=ft)


def timing_section(size: int, batch: int, k: int) -> dict:
    """Timing only (untrained generator of the default 64/128-px architecture, random images)."""
    torch.manual_seed(0)
    gen = Generator(size, 128, 3, 32, 256, "dcgan").eval()
    imgs = torch.rand(64, 3, size, size) * 2 - 1
    pool = CandidatePool()
    start = time.perf_counter()
    pool.get(gen, PAPER_RGI, torch.device("cpu"))
    out = {"pool_s": time.perf_counter() - start}
    fast_rgi, fast_rrgi = method_config(Rgi), method_config(RRgi)
    b1 = imgs[:2]
    out["paper_rgi_b1"] = extrapolated_time(gen, b1, PAPER_RGI, 1, pool, k)
    out["paper_rrgi_b1"] = extrapolated_time(gen, b1, PAPER_RRGI, 1, pool, k)
    out["paper_rgi_bB"] = extrapolated_time(gen, imgs[:batch], PAPER_RGI, batch, pool, k)
    out["rgi_b1"] = extrapolated_time(gen, b1, fast_rgi, 1, pool, k)
    out["rgi_bB"] = extrapolated_time(gen, imgs[:batch], fast_rgi, batch, pool, k)
    out["rrgi_bB"] = extrapolated_time(gen, imgs[:batch], fast_rrgi, batch, pool, k)
    out["scaling"] = []
    if size == 64:
        for bs in (1, 4, 16, 64):
            part = imgs[: max(bs, 2)]
            _peak_rss_reset()
            t = extrapolated_time(gen, part, fast_rgi, bs, pool, k)
            out["scaling"].append((bs, t, _peak_rss_mib()))
            print("scaling", bs, t, flush=True)
    out["flops"] = generator_flops(gen, 128)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/tmp/sbtad32"))
    ap.add_argument("--ckpt", type=Path, default=Path("/tmp/rgi_gan32.pt"))
    ap.add_argument("--train", action="store_true", help="train the GAN first if --ckpt is missing")
    ap.add_argument("--per-category", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--timing-iters", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-paper-rrgi", action="store_true")
    ap.add_argument("--skip-128", action="store_true")
    ap.add_argument("--repaint", action="store_true", help="random-colour defects (see above)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/inversion_speed.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.ckpt.exists():
        if not args.train:
            raise SystemExit(f"{args.ckpt} missing: run benchmarks/train_gan.py or pass --train")
        import subprocess
        import sys

        script = Path(__file__).with_name("train_gan.py")
        cmd = [sys.executable, str(script), "--data", str(args.data), "--out", str(args.ckpt)]
        subprocess.run(cmd, check=True)
    generator = load_generator(args.ckpt)
    data = load_test_set(args.data, args.per_category, repaint=args.repaint)
    load_start = os.getloadavg()
    pool = CandidatePool()
    pool.get(generator, PAPER_RGI, torch.device("cpu"))

    rows = []
    for name, config, batch in variants(args.batch, not args.skip_paper_rrgi):
        print(f"running {name} (batch {batch})", flush=True)
        res = run_variant(generator, data, config, batch, pool)
        res.update(name=name, batch=batch, config=config)
        rows.append(res)
        print({k: v for k, v in res.items() if k != "config"}, flush=True)

    timing = {64: timing_section(64, args.batch, args.timing_iters)}
    print(timing, flush=True)
    if not args.skip_128:
        timing[128] = timing_section(128, args.batch, args.timing_iters)
        print(timing[128], flush=True)
    rate = matmul_rate()
    small_flops = generator_flops(generator, generator.latent_dim)
    load_end = os.getloadavg()
    write_report(args, rows, len(data["images"]), timing, rate, small_flops, load_start, load_end)


def write_report(args, rows, n, timing, rate, small_flops, load_start, load_end) -> None:
    meta = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    arch = meta["arch"]

    def row_of(name: str) -> dict:
        return next(r for r in rows if r["name"] == name)

    fast_rgi, fast_rrgi = method_config(Rgi), method_config(RRgi)
    lines = [
        "# Inversion speed: paper protocol vs fast defaults",
        "",
        f"Generated by `benchmarks/inversion_speed.py` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"({os.cpu_count()} CPU cores, other jobs may share them; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads). Load average (1/5/15 min) at "
        f"start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, at end "
        f"{load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}: a load above the thread count "
        "inflates absolute times; ratios between rows of this run are the meaningful numbers. "
        "Threads, channels-last and torch.compile: "
        "[backends.md](backends.md).",
        "",
        "## Quality and cost, every variant on the same images and generator",
        "",
        f"Generator: DCGAN (`benchmarks/train_gan.py`: {arch['image_size']} px, latent "
        f"{arch['latent_dim']}, base width {arch['base_width']}, max width {arch['max_width']}), "
        f"fitted by anomalib's Engine for {meta.get('epochs', '?')} epochs "
        f"({meta.get('seconds', math.nan):.0f} s) on the synthetic BTAD stand-in's train/good "
        f"({args.data}). Images: the first {args.per_category} test images of each of the 4 "
        f"categories = {n}, "
        + (
            "defects repainted inside the dataset's masks with one random colour per image"
            if args.repaint
            else "with the dataset's own mean-colour defects"
        )
        + "; the clean twin (test/good) is the "
        "ground truth of the background. Dice (oracle) = the paper's protocol: per-image min-max "
        "normalised grey |M̂|, best of 101 thresholds per image, mean over images. Dice (pooled) "
        "= one best threshold for all pixels of all images (pixel F1-max). BG RMSE = RMSE of "
        "G(ẑ) against the clean twin on background pixels, [0, 1] units. Eq. 3 at ẑ = the joint "
        "objective's value at the final ẑ with its optimal M (mean per image; lower = the "
        "inversion problem solved further). Peak RSS = the process's high-water mark during the "
        "variant (includes the Python/torch baseline, ~1 GiB).",
        "",
        "| variant | iterations | batch | s/image | Dice (oracle) | Dice (pooled) | BG RMSE | "
        "eq. 3 at ẑ | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['iterations']} | {r['batch']} | {r['s_per_image']:.3f} | "
            f"{r['dice_oracle']:.3f} | {r['dice_pooled']:.3f} | {r['rmse_bg']:.4f} | "
            f"{r['objective']:.2f} | {r['peak_mib']:.0f} |"
        )
    p_rgi, d_rgi = row_of("RGI paper (Adam M, 2000 it)"), row_of("**RGI default**")
    lines += [
        "",
        f"Default RGI: `{_short(fast_rgi)}`.  ",
        f"Default R-RGI: `{_short(fast_rrgi)}`.",
        "",
        f"- RGI default − paper: Dice oracle {d_rgi['dice_oracle'] - p_rgi['dice_oracle']:+.3f}, "
        f"pooled {d_rgi['dice_pooled'] - p_rgi['dice_pooled']:+.3f}; "
        f"{p_rgi['s_per_image'] / d_rgi['s_per_image']:.0f}× less time per image at the same "
        "batch size.",
    ]
    try:
        p_rr, d_rr = row_of("R-RGI paper (ft 1500 it, lr 1e-5)"), row_of("**R-RGI default**")
        lines.append(
            f"- R-RGI default − paper: Dice oracle "
            f"{d_rr['dice_oracle'] - p_rr['dice_oracle']:+.3f}, pooled "
            f"{d_rr['dice_pooled'] - p_rr['dice_pooled']:+.3f}; time "
            f"{d_rr['s_per_image'] / d_rgi['s_per_image']:.1f}× default RGI, "
            f"{p_rr['s_per_image'] / d_rr['s_per_image']:.0f}× less than paper R-RGI."
        )
    except StopIteration:
        pass
    lines += [
        "",
        "## Time at the target resolutions (64 and 128 px)",
        "",
        "Untrained generators of the default architecture (latent 128, base width 32, max width "
        "256; 64 px: 2.26 M parameters), random images: the cost of a solve does not depend on "
        "the weights when the iteration count is fixed. Each entry is extrapolated from timed "
        f"1- and {args.timing_iters}-iteration solves (t1 + (tk − t1)·(N − 1)/(k − 1); R-RGI's "
        "fine-tuning phase timed separately); the latent pool (512 candidates) is built once "
        "and cached, as in the model, and its build time is listed apart.",
        "",
        "| size | paper RGI b1 | paper RGI b16 | paper R-RGI b1 | default RGI b1 | "
        "**default RGI b16** | **default R-RGI b16** | pool build (once) | speed-up RGI "
        "(paper b1 / default b16) | R-RGI / RGI |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, t in timing.items():
        lines.append(
            f"| {size} px | {t['paper_rgi_b1']:.1f} s | {t['paper_rgi_bB']:.1f} s | "
            f"{t['paper_rrgi_b1']:.1f} s | {t['rgi_b1']:.2f} s | {t['rgi_bB']:.2f} s | "
            f"{t['rrgi_bB']:.2f} s | {t['pool_s']:.1f} s | "
            f"{t['paper_rgi_b1'] / t['rgi_bB']:.0f}× | {t['rrgi_bB'] / t['rgi_bB']:.1f}× |"
        )
    t64 = timing[64]
    lines += [
        "",
        "Time per image vs batch size (default RGI, 64 px):",
        "",
        "| batch | s/image | peak RSS (MiB) |",
        "|---|---|---|",
    ]
    lines += [f"| {bs} | {t:.3f} | {m:.0f} |" for bs, t, m in t64["scaling"]]
    floor = fast_rgi.iterations * 3 * t64["flops"] / rate
    lines += [
        "",
        "## Floor",
        "",
        f"- Generator forward pass, 1 image: {t64['flops'] / 1e6:.0f} MFLOP at 64 px"
        + (f", {timing[128]['flops'] / 1e6:.0f} MFLOP at 128 px" if 128 in timing else "")
        + f", {small_flops / 1e6:.1f} MFLOP for the 32-px benchmark generator "
        "(torch.utils.flop_counter).",
        f"- Measured matmul rate, this run (512×512 fp32, {torch.get_num_threads()} threads, "
        "best of 20): "
        f"{rate / 1e9:.1f} GFLOP/s.",
        f"- Floor of the default RGI solve at 64 px ({fast_rgi.iterations} iterations × "
        f"forward + backward ≈ 3 forwards): {floor:.3f} s/image; measured at batch 16: "
        f"{t64['rgi_bB']:.3f} s/image = {t64['rgi_bB'] / floor:.1f}× the floor. The paper "
        f"protocol's floor: {2000 * 3 * t64['flops'] / rate:.2f} s/image.",
        "",
    ]
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(args.out)
    print("\n".join(lines))


def _short(config: InversionConfig) -> str:
    keys = (
        "objective",
        "lam",
        "iterations",
        "mask_update",
        "lr_latent",
        "finetune_iterations",
        "lr_generator",
        "init_candidates",
        "early_stop_patience",
        "early_stop_tol",
    )
    return ", ".join(f"{k}={getattr(config, k)}" for k in keys)


if __name__ == "__main__":
    main()
