"""What a multi-draw benchmark costs on W parallel slots, from the per-unit costs a kept run
measured (no new run): the makespan of its units, the ``fit_from`` order respected.

    python benchmarks/parallel_cost.py benchmarks/kept_runs/elpv_table2/elpv_s* --slots 2 8 64

Each unit's cost (seconds of one slot, as measured on the run's machine and thread count):
a model that fits, its fit time; every unit, its prediction time: the test seconds per defect
image times the images of its prediction passes (one shared pass: the normal, calibration and
every category's defect images; a unit with its own settings per category: one pass per
category, each with the normal and calibration images). A unit with its own settings per
category is split into one task per category (``--workers`` does this). Tasks are placed by list
scheduling (the longest ready task first, on the first free slot), which is within 2× of the
best schedule; the lower bounds, total work / W and the longest chain, are printed beside it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Task:
    name: str
    seconds: float
    after: list[str] = field(default_factory=list)


def unit_tasks(done: Path, draw: str) -> list[Task]:
    """The tasks of one unit (``done.json``): its fit, and its prediction as one task or one per
    category."""
    rows = json.loads(done.read_text())["rows"]
    first = rows[0]
    model, source = first["model"], first["fit_from"]
    # its own settings per category (the rows' init_args differ): a pass per category
    own = len({r["init_args"] for r in rows}) > 1 and source
    normals = first["n_normal"] + first["n_calibration"]
    tasks, fit = [], f"{model}@{draw}:fit"
    after = [f"{source}@{draw}:fit"] if source else []
    if not source:
        tasks.append(Task(fit, first["fit_seconds"]))
        after = [fit]
    if own:  # one pass (and one task) per category
        for r in rows:
            seconds = r["test_seconds_per_image"] * (r["n_defect"] + normals)
            tasks.append(Task(f"{model}@{draw}:{r['category']}", seconds, after))
    else:
        images = normals + sum(r["n_defect"] for r in rows)
        tasks.append(Task(f"{model}@{draw}:test", first["test_seconds_per_image"] * images, after))
    return tasks


def makespan(tasks: list[Task], slots: int) -> float:
    """List scheduling: whenever a slot is free, the longest task whose dependencies ended."""
    end: dict[str, float] = {}
    free = [0.0] * slots
    pending = sorted(tasks, key=lambda t: -t.seconds)
    while pending:
        ready = [t for t in pending if all(a in end for a in t.after)]
        slot = min(range(slots), key=free.__getitem__)
        # the task that can start soonest on this slot (ties: the longest)
        task = min(ready, key=lambda t: (max([free[slot], *(end[a] for a in t.after)]), -t.seconds))
        start = max([free[slot], *(end[a] for a in task.after)])
        end[task.name] = free[slot] = start + task.seconds
        pending.remove(task)
    return max(end.values())


def longest_chain(tasks: list[Task]) -> tuple[float, str]:
    by_name = {t.name: t for t in tasks}
    finish: dict[str, float] = {}

    def ends(name: str) -> float:
        if name not in finish:
            task = by_name[name]
            finish[name] = task.seconds + max((ends(a) for a in task.after), default=0.0)
        return finish[name]

    last = max(by_name, key=ends)
    chain = [last]
    while by_name[chain[-1]].after:
        chain.append(max(by_name[chain[-1]].after, key=ends))
    return ends(last), " → ".join(reversed(chain))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+", type=Path, help="one kept run directory per draw")
    p.add_argument("--slots", nargs="+", type=int, default=[1, 2, 8, 64])
    args = p.parse_args()
    tasks = [
        task
        for run_dir in args.run_dirs
        for done in sorted(run_dir.glob("work/*/done.json"))
        for task in unit_tasks(done, run_dir.name)
    ]
    total = sum(t.seconds for t in tasks)
    chain, path = longest_chain(tasks)
    print(f"{len(tasks)} tasks from {len(args.run_dirs)} draws; total work {total / 3600:.2f} h")
    print(f"longest chain {chain / 3600:.2f} h: {path}")
    print("| slots | makespan (h) | lower bound max(work / slots, chain) (h) | speed-up vs 1 |")
    print("|---|---|---|---|")
    for slots in args.slots:
        span = makespan(tasks, slots)
        bound = max(total / slots, chain)
        print(f"| {slots} | {span / 3600:.2f} | {bound / 3600:.2f} | {total / span:.1f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
