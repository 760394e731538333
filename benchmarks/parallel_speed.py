"""Serial against ``--workers`` on this machine, back to back: wall time and machine-wide CPU time.

    python benchmarks/parallel_speed.py --config configs/benchmark/quick.yaml --workers 2 \
        --out docs/results/parallel_quick.json

Runs ``rgi-anomalib benchmark`` twice on the same config, each in a fresh run directory under
``--scratch``: first serially (torch's default threads: every core), then with ``--workers N
--threads-per-worker T``. For each it records the wall time and the CPU seconds the whole machine
spent meanwhile (``/proc/stat``: user + nice + system + irq + softirq; Ray's worker processes are
not children of this script, so its own rusage would miss them). Run it on an otherwise idle
machine: everything else running counts too. Writes a JSON (``--out``) with both arms, their
ratio, and whether the two runs' rows agree (times aside; a GAN trained with another thread count
is not bit-identical, so a difference there is expected and reported per model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CLI = Path(sys.executable).parent / "rgi-anomalib"
TIMES = ("fit_seconds", "test_seconds_per_image")


def busy_cpu_seconds() -> float:
    """CPU seconds all cores of the machine spent busy since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed(command: list[str], log: Path) -> dict[str, float]:
    cpu0, wall0 = busy_cpu_seconds(), time.perf_counter()
    with log.open("w") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True)
    wall, cpu = time.perf_counter() - wall0, busy_cpu_seconds() - cpu0
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def rows(run_dir: Path) -> list[dict]:
    found = json.loads((run_dir / "results.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if k not in TIMES} for r in found]


def differing_models(a: list[dict], b: list[dict]) -> list[str]:
    return sorted({x["model"] for x, y in zip(a, b, strict=True) if x != y})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads-per-worker", type=int, default=1)
    p.add_argument("--scratch", type=Path, default=Path("runs/parallel_speed"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--skip-serial", action="store_true", help="only the parallel arm")
    args = p.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = [str(CLI), "benchmark", "--config", args.config]
    result: dict = {"config": args.config, "cores": os.cpu_count(), "started": stamp}
    parallel_dir = args.scratch / f"parallel-{stamp}"
    workers = ["--workers", str(args.workers), "--threads-per-worker", str(args.threads_per_worker)]
    arms = [("parallel", parallel_dir, workers)]
    if not args.skip_serial:
        arms.insert(0, ("serial", args.scratch / f"serial-{stamp}", []))
    for name, run_dir, extra in arms:
        command = [*base, "--run-dir", str(run_dir), *extra]
        print("running:", " ".join(command), flush=True)
        result[name] = {
            "command": " ".join(command[1:]),
            **timed(command, run_dir.with_suffix(".log")),
        }
        print(name, result[name], flush=True)
    if "serial" in result:
        s, q = result["serial"], result["parallel"]
        result["wall_ratio_serial_over_parallel"] = round(s["wall_s"] / q["wall_s"], 2)
        result["cpu_ratio_parallel_over_serial"] = round(q["cpu_s"] / s["cpu_s"], 2)
        serial_rows, parallel_rows = rows(arms[0][1]), rows(parallel_dir)
        result["rows"] = len(parallel_rows)
        result["models_whose_rows_differ"] = differing_models(serial_rows, parallel_rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
