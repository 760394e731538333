"""Train the GAN that ``inversion_speed.py`` inverts: ``Rgi`` fitted by anomalib's ``Engine``.

Usage: python benchmarks/train_gan.py --data /tmp/sbtad32 --out /tmp/rgi_gan32.pt --size 32
Builds a synthetic BTAD stand-in at ``--size`` in ``--data`` if it does not exist yet. Writes
``{"state_dict", "arch", "epochs", "seconds"}`` of the fitted ``GanInversionModel`` (no
Lightning state: the benchmark only needs the generator), atomically.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def train_gan(
    data: Path,
    out: Path,
    *,
    size: int,
    epochs: int,
    latent_dim: int,
    base_width: int,
    max_width: int,
    batch: int,
    n_train: int,
    n_test: int,
    seed: int = 0,
) -> float:
    """Fit ``Rgi``'s GAN on ``data``'s train/good with Engine; save to ``out``; return seconds."""
    from lightning.pytorch import seed_everything

    from rgi_anomalib.data import SyntheticBTAD
    from rgi_anomalib.engine import cpu_engine
    from rgi_anomalib.models import Rgi
    from rgi_anomalib.models.gan_inversion.flat_args import nest_flat_args as nested
    from rgi_anomalib.utils import atomic_path

    seed_everything(seed, verbose=False)
    datamodule = SyntheticBTAD(
        root=data,
        image_size=size,
        n_train=n_train,
        n_test_per_category=n_test,
        train_batch_size=batch,
        seed=seed,
    )
    arch = {
        "image_size": size,
        "latent_dim": latent_dim,
        "base_width": base_width,
        "max_width": max_width,
    }
    # The plain GAN of docs/results/inversion_speed.md: inversion_speed.py rebuilds the model
    # without an encoder.
    model = Rgi(
        **nested(
            **arch,
            encoder_weight=0.0,
            max_epochs=epochs,
            sample_every_n_epochs=0,
            seed=seed,
            visualizer=False,
        )
    )
    with tempfile.TemporaryDirectory() as work:
        # limit_val_batches=0: training only, no inversion of validation images.
        engine = cpu_engine(work, label="rgi", progress_bar=True, limit_val_batches=0)
        start = time.perf_counter()
        engine.fit(model=model, datamodule=datamodule)
        seconds = time.perf_counter() - start
    state = {
        "state_dict": model.model.state_dict(),
        "arch": arch,
        "epochs": epochs,
        "seconds": seconds,
    }
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/sbtad32"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/rgi_gan32.pt"))
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-test", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--latent-dim", type=int, default=64)
    ap.add_argument("--base-width", type=int, default=16)
    ap.add_argument("--max-width", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seconds = train_gan(
        args.data,
        args.out,
        size=args.size,
        epochs=args.epochs,
        latent_dim=args.latent_dim,
        base_width=args.base_width,
        max_width=args.max_width,
        batch=args.batch,
        n_train=args.n_train,
        n_test=args.n_test,
    )
    print(f"trained {args.epochs} epochs in {seconds:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
