"""PatchCore's memory and CPU time with ``efficientnet_lite0_pypi``, before and after the coreset
fix (issue 32), and what a process-wide ``M_MMAP_THRESHOLD`` costs everything else.

Each variant runs the README's command, ``anomalib train --model Patchcore --model.backbone
efficientnet_lite0_pypi --model.layers "[blocks.2, blocks.4]" --data anomalib.data.Folder ...``
(anomalib's default coreset ratio 0.1, its default 256 px input), in a child process of its own,
on N defect-free KolektorSDD photos (``../shared/data/kolektorsdd_half``; generated images where
that is missing) plus 4 good and 4 defect test images:

- ``before``: glibc defaults, anomalib's own ``KCenterGreedy`` (the fix undone in the child);
- ``after``: glibc defaults, with the fix (rgi_anomalib/models/patchcore_memory.py), as installed;
- ``mallopt``: the old workaround, ``mallopt(M_MMAP_THRESHOLD, 1 MB)`` before anything is
  imported, anomalib's own sampler.

The child's resident memory is watched every 0.2 s and the child is killed above ``--cap-gb``
(reported as "exceeded"). Peak RSS is the child's ``ru_maxrss`` (``os.wait4``; includes any
process it waited for), user/system CPU times the same ``rusage``.

Second part, the issue's micro-benchmark: 150 Adam steps of a 3-layer conv net on a
16×3×64×64 batch, one thread, plain glibc vs ``M_MMAP_THRESHOLD`` = 1 MB (one child each,
alternating, ``--repeats`` times).

    python benchmarks/patchcore_memory.py --images 24 100 --out docs/results/patchcore_memory.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KOLEKTOR = REPO.parent / "shared" / "data" / "kolektorsdd_half"
VARIANTS = ("before", "after", "mallopt")

# Runs in the child: optional mallopt first (before torch allocates), then the anomalib CLI.
CHILD = """
import ctypes, sys
variant = sys.argv[1]
if variant == "mallopt":
    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
import anomalib.models  # the import hook registers our models and installs the fix
from rgi_anomalib.models import patchcore_memory
if variant != "after":
    patchcore_memory.uninstall()
assert patchcore_memory.installed() == (variant == "after")
from anomalib.cli.cli import main
sys.argv = ["anomalib", *sys.argv[2:]]
main()
"""

ADAM = """
import ctypes, sys, time, resource
if sys.argv[1] == "mallopt":
    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(64, 3, 3, padding=1),
)
opt = torch.optim.Adam(net.parameters(), 1e-3)
x = torch.rand(16, 3, 64, 64)
t = time.perf_counter()
for _ in range(int(sys.argv[2])):
    opt.zero_grad()
    loss = (net(x) - x).square().mean()
    loss.backward()
    opt.step()
print(f"WALL {time.perf_counter() - t:.3f}")
"""


def _rss_gb(pid: int) -> float:
    try:
        with Path(f"/proc/{pid}/status").open() as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return 0.0


def run_child(argv: list[str], cap_gb: float, env: dict[str, str], log: Path) -> dict:
    """Run ``argv``; kill its process group if its RSS passes ``cap_gb``; return its rusage."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
        exceeded, watched = False, 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_gb(proc.pid)
            watched = max(watched, rss)
            if rss > cap_gb and not exceeded:
                exceeded = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": proc.returncode,
        "exceeded": exceeded,
        "maxrss_gb": usage.ru_maxrss / 1e6,  # kB
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "minflt": usage.ru_minflt,
        "wall_s": time.perf_counter() - start,
        "watched_gb": watched,
    }


def make_dataset(root: Path, n: int) -> None:
    """Folder layout: train/good (n images), test/good (4), test/defect (4) + masks."""
    for sub in ("train/good", "test/good", "test/defect", "masks/defect"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    good = sorted((KOLEKTOR / "train_good").glob("*.png"))
    defect = sorted((KOLEKTOR / "defect" / "images").glob("*.png"))
    if len(good) >= n + 4 and len(defect) >= 4:
        for i, path in enumerate(good[: n + 4]):
            sub = "train/good" if i < n else "test/good"
            (root / sub / path.name).symlink_to(path)
        for path in defect[:4]:
            (root / "test/defect" / path.name).symlink_to(path)
            mask = KOLEKTOR / "defect" / "masks" / f"{path.stem}_mask.png"
            (root / "masks/defect" / path.name).symlink_to(mask)
        return
    # Generated stand-in: smooth random textures, a bright square as the defect.
    import torch
    from torchvision.utils import save_image

    g = torch.Generator().manual_seed(0)

    def texture() -> torch.Tensor:
        low = torch.rand(1, 3, 16, 16, generator=g)
        return torch.nn.functional.interpolate(low, size=256, mode="bilinear")[0]

    for i in range(n + 4):
        save_image(texture(), root / ("train/good" if i < n else "test/good") / f"{i:04d}.png")
    for i in range(4):
        img, mask = texture(), torch.zeros(1, 256, 256)
        img[:, 100:140, 100:140] = 1.0
        mask[:, 100:140, 100:140] = 1.0
        save_image(img, root / "test/defect" / f"{i:04d}.png")
        save_image(mask, root / "masks/defect" / f"{i:04d}.png")


def anomalib_args(root: Path, work: Path) -> list[str]:
    return [
        "train", "--model", "Patchcore", "--model.backbone", "efficientnet_lite0_pypi",
        "--model.layers", "[blocks.2, blocks.4]",
        "--data", "anomalib.data.Folder", "--data.name", "kolektor", "--data.root", str(root),
        "--data.normal_dir", "train/good", "--data.normal_test_dir", "test/good",
        "--data.abnormal_dir", "test/defect", "--data.mask_dir", "masks/defect",
        "--data.num_workers", "0",
        "--default_root_dir", str(work),
    ]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, nargs="+", default=[24, 100])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--cap-gb", type=float, default=8.0)
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads in the children")
    p.add_argument("--adam-steps", type=int, default=150)
    p.add_argument("--repeats", type=int, default=2, help="Adam runs per setting")
    p.add_argument("--out", type=Path, default=REPO / "docs/results/patchcore_memory.md")
    args = p.parse_args()

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env.pop("MALLOC_ARENA_MAX", None)
    python = sys.executable
    rows, commands = [], []
    tmp = Path(tempfile.mkdtemp(prefix="patchcore_memory_"))
    for n in args.images:
        root = tmp / f"data_{n}"
        make_dataset(root, n)
        for variant in args.variants:
            cli = anomalib_args(root, tmp / f"work_{n}_{variant}")
            argv = [python, "-W", "ignore", "-c", CHILD, variant, *cli]
            commands.append(
                f"[{variant}] OMP_NUM_THREADS={args.threads} python -c CHILD {variant} "
                f"(= anomalib {shlex.join(cli)})"
            )
            res = run_child(argv, args.cap_gb, env, tmp / f"log_{n}_{variant}.txt")
            res.update(images=n, variant=variant)
            rows.append(res)
            print(res, flush=True)

    adam = []
    for _ in range(args.repeats):
        for setting in ("plain", "mallopt"):
            argv = [python, "-c", ADAM, setting, str(args.adam_steps)]
            log = tmp / f"adam_{setting}.txt"
            res = run_child(argv, args.cap_gb, env, log)
            res.update(setting=setting, inner_wall=float(log.read_text().split("WALL")[-1]))
            adam.append(res)
            print(res, flush=True)
    commands.append(
        f"OMP_NUM_THREADS=1 python -c ADAM {{plain|mallopt}} {args.adam_steps}"
        f" (ADAM: the script's ADAM string)"
    )
    write_report(args, rows, adam, commands)


def _status(r: dict, cap: float) -> str:
    if r["exceeded"]:
        return f"exceeded {cap:g} GB, killed"
    return "ok" if r["rc"] == 0 else f"exit {r['rc']}"


def write_report(args: argparse.Namespace, rows: list[dict], adam: list[dict], commands) -> None:
    cpu = platform.processor() or platform.machine()
    try:
        with Path("/proc/cpuinfo").open() as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    lines = [
        "# PatchCore memory (issue 32): coreset buffers vs glibc's allocator",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {os.cpu_count()} cores ({cpu}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"{platform.platform()}, Python {platform.python_version()}; shared with other jobs, "
        f"so times are comparable within a table only. Children run with "
        f"OMP_NUM_THREADS={args.threads}; memory cap {args.cap_gb:g} GB (child killed above it).",
        "",
        f"Command: `python benchmarks/patchcore_memory.py --images "
        f"{' '.join(map(str, args.images))} --cap-gb {args.cap_gb:g} --threads {args.threads} "
        f"--adam-steps {args.adam_steps} --repeats {args.repeats}`",
        "",
        "## PatchCore fit + test, README command (coreset 0.1, 256 px, efficientnet_lite0_pypi)",
        "",
        "| train images | variant | result | peak RSS GB | user s | sys s | minor faults "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['images']} | {r['variant']} | {_status(r, args.cap_gb)} | "
            f"{r['maxrss_gb']:.2f} | {r['user_s']:.1f} | {r['sys_s']:.1f} | "
            f"{r['minflt']:,} | {r['wall_s']:.0f} |"
        )
    lines += [
        "",
        "before: anomalib's KCenterGreedy, glibc defaults; after: BufferedKCenterGreedy "
        "(rgi_anomalib/models/patchcore_memory.py, installed by the import hook), glibc "
        "defaults; mallopt: anomalib's KCenterGreedy with M_MMAP_THRESHOLD = 1 MB (the old "
        "`rgi-anomalib benchmark` workaround).",
        "",
        f"## {args.adam_steps} Adam steps, 3-layer conv net, 16×3×64×64, one thread",
        "",
        "| M_MMAP_THRESHOLD | run wall s | loop wall s | user s | sys s | minor faults |",
        "|---|---|---|---|---|---|",
    ]
    for r in adam:
        setting = "glibc default (dynamic)" if r["setting"] == "plain" else "1 MB (mallopt)"
        lines.append(
            f"| {setting} | {r['wall_s']:.1f} | {r['inner_wall']:.1f} | {r['user_s']:.1f} | "
            f"{r['sys_s']:.1f} | {r['minflt']:,} |"
        )
    lines += ["", "## Command lines (children)", "", "```"]
    lines += list(commands)
    lines += ["```", ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
