"""Benchmark harness: ``rgi-anomalib benchmark --config configs/benchmark/quick.yaml``.

Modules: config (YAML schema), metrics (Dice protocols, AUROC), runner (train/test loop),
report (tables, plots), check (CI guard), cli. See docs/benchmark.md.
"""
