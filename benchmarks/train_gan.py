"""Train the GAN the inversion benchmark uses (a plain loop with the losses of Rgi.training_step).

Usage: python benchmarks/train_gan.py --data /tmp/sbtad64 --out /tmp/rgi_gan64.pt --minutes 8
Builds a synthetic BTAD stand-in at ``--size`` if ``--data`` does not exist yet.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rgi_anomalib.models.gan_inversion.solver import InversionConfig
from rgi_anomalib.models.gan_inversion.torch_model import GanInversionModel


def load_dir(path: Path) -> torch.Tensor:
    files = sorted(path.glob("*.png"))
    arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def ensure_dataset(root: Path, size: int, n_train: int, n_test: int) -> None:
    if (root / "train").exists():
        return
    from synthetic_btad import build_dataset

    build_dataset(root, size=size, seed=0, n_train=n_train, n_test_per_category=n_test)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/tmp/sbtad64"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/rgi_gan64.pt"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--n-train", type=int, default=600)
    ap.add_argument("--n-test", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--latent-dim", type=int, default=128)
    ap.add_argument("--base-width", type=int, default=32)
    ap.add_argument("--max-width", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ensure_dataset(args.data, args.size, args.n_train, args.n_test)
    train_dirs = [d for d in (args.data / "train").iterdir() if d.is_dir()]
    real_all = torch.cat([load_dir(d) for d in train_dirs])
    print("train images", real_all.shape, flush=True)
    arch = {
        "image_size": args.size,
        "latent_dim": args.latent_dim,
        "base_width": args.base_width,
        "max_width": args.max_width,
    }
    model = GanInversionModel(inversion=InversionConfig(), **arch)
    g, d = model.generator.train(), model.discriminator.train()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start, step, bs = time.time(), 0, args.batch
    while time.time() - start < args.minutes * 60:
        idx = torch.randint(0, len(real_all), (bs,))
        real = real_all[idx]
        if torch.rand(()) < 0.5:
            real = real.flip(-1)
        z = torch.randn(bs, g.latent_dim)
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(g(z).detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d(g(torch.randn_like(z)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        model.update_ema(min(0.999, (1 + step) / (10 + step)))
        step += 1
        if step % 100 == 0:
            print(
                f"step {step} t={time.time() - start:.0f}s d={loss_d.item():.3f} "
                f"g={loss_g.item():.3f}",
                flush=True,
            )
            torch.save(
                {"state_dict": model.state_dict(), "arch": arch, "steps": step},
                str(args.out) + ".tmp",
            )
            Path(str(args.out) + ".tmp").replace(args.out)
    torch.save(
        {"state_dict": model.state_dict(), "arch": arch, "steps": step}, str(args.out) + ".tmp"
    )
    Path(str(args.out) + ".tmp").replace(args.out)
    print("done", step, flush=True)


if __name__ == "__main__":
    main()
