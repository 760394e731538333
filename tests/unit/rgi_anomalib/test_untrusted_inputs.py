"""Files and configs from others never run code: checkpoints are read with weights_only=True,
a config imports classes only from trusted packages, and written files honour the umask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from model_helpers import nested
from PIL import Image

from rgi_anomalib.benchmark.config import ConfigError
from rgi_anomalib.benchmark.data import resolve_datamodule_class
from rgi_anomalib.benchmark.models import resolve_model_class
from rgi_anomalib.benchmark.trusted import allow_modules
from rgi_anomalib.inpaint import load_model
from rgi_anomalib.inpaint import main as inpaint_main
from rgi_anomalib.models import Rgi
from rgi_anomalib.models.gan_inversion.lightning_model import CHECKPOINT_CLASS_KEY
from rgi_anomalib.utils import atomic_path

BIN = Path(sys.executable).parent
TINY = {"image_size": 32, "latent_dim": 16, "base_width": 8, "max_width": 32, "encoder_weight": 0}


class _RunsCommand:
    """Unpickling this calls os.system: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    model = Rgi(**nested(**TINY))
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        CHECKPOINT_CLASS_KEY: "Rgi",
        "payload": _RunsCommand(marker),
    }
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def _tiny_checkpoint(tmp_path: Path, **solve: object) -> Path:
    model = Rgi(**nested(**TINY, **solve))
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": "2.6.0",
        CHECKPOINT_CLASS_KEY: "Rgi",
    }
    path = tmp_path / "rgi.ckpt"
    torch.save(checkpoint, path)
    return path


def test_a_checkpoint_that_embeds_a_command_is_refused_without_running_it(tmp_path: Path) -> None:
    path, marker = _malicious_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"refused without unpickling.*posix\.system"):
        load_model(path)
    assert not marker.exists()


def test_the_inpaint_command_refuses_it_too(tmp_path: Path) -> None:
    path, marker = _malicious_checkpoint(tmp_path)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    done = subprocess.run(
        [str(BIN / "rgi-anomalib"), "inpaint", "--ckpt_path", str(path), "--input", str(image),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refused without unpickling" in done.stderr
    assert "weights_only` set to `False`" not in done.stderr  # torch's advice is not passed on
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_of_another_anomalib_model_is_named_as_such(tmp_path: Path) -> None:
    patchcore_like = {
        "state_dict": {"model.feature_extractor.conv.weight": torch.zeros(1), "model.memory_bank":
                       torch.zeros(4, 8)},
        "hyper_parameters": {"backbone": "wide_resnet50_2", "coreset_sampling_ratio": 0.1},
    }  # fmt: skip
    path = tmp_path / "patchcore.ckpt"
    torch.save(patchcore_like, path)
    for model in (None, "rgi"):  # also after following the old advice to pass --model
        with pytest.raises(ValueError, match="is not a GAN-inversion checkpoint"):
            load_model(path, model)


def test_a_file_that_is_no_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_model(path)


def test_inpaint_resizes_other_sizes_as_the_pre_processor_does(tmp_path: Path, capsys) -> None:
    ckpt = _tiny_checkpoint(tmp_path, iterations=2, init_candidates=4, tile_size=None)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(inputs / "wide.png")
    out = tmp_path / "out"
    assert (
        inpaint_main(["--ckpt_path", str(ckpt), "--input", str(inputs), "--output", str(out)]) == 0
    )
    assert "80×48 resized to 32×32" in capsys.readouterr().out
    assert Image.open(out / "wide_restored.png").size == (32, 32)


def test_inpaint_checks_every_input_before_writing_any_output(tmp_path: Path, capsys) -> None:
    ckpt = _tiny_checkpoint(tmp_path, iterations=2, init_candidates=4, tile_size=None)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(inputs / "a_good.png")
    (inputs / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    code = inpaint_main(["--ckpt_path", str(ckpt), "--input", str(inputs), "--output", str(out)])
    assert code == 2
    assert "b_broken.png: not a readable image" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("resolve", "what"), [(resolve_model_class, "model class"), (resolve_datamodule_class, "")]
)
def test_a_config_class_path_outside_trusted_packages_is_refused_before_import(
    resolve: object, what: str
) -> None:
    sys.modules.pop("this", None)
    with pytest.raises(ConfigError, match="--allow-module this") as err:
        resolve("this.s")  # type: ignore[operator]
    assert what in str(err.value)
    assert "this" not in sys.modules  # the Zen of Python was not printed: never imported


def test_allow_module_lets_the_user_trust_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    allow_modules(["json"])
    try:
        with pytest.raises(ConfigError, match="not an anomalib AnomalibModule"):
            resolve_model_class("json.decoder.JSONDecoder")  # imported, then type-checked
        with pytest.raises(ConfigError, match="--allow-module jsonschema"):
            resolve_model_class("jsonschema.Validator")  # a prefix is not a package
    finally:
        allow_modules([])
    assert resolve_model_class("rgi_anomalib.models.Rgi") is Rgi  # trusted without the flag


@pytest.mark.slow
def test_the_benchmark_command_refuses_an_untrusted_class_path(tmp_path: Path) -> None:
    config = {
        "run_dir": str(tmp_path / "run"),
        "datasets": [{"name": "d", "root": str(tmp_path)}],
        "models": [{"name": "zen", "class_path": "this.s"}],
    }
    path = tmp_path / "zen.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [str(BIN / "rgi-anomalib"), "benchmark", "--config", str(path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--allow-module this" in done.stderr
    assert "Beautiful is better than ugly" not in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_results_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "results.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == mode


def test_a_built_dataset_honours_the_umask(tmp_path: Path) -> None:
    from synthetic_btad import build_dataset

    old = os.umask(0o022)
    try:
        build_dataset(tmp_path / "ds", size=32, n_train=2, n_test_per_category=1, seed=0)
    finally:
        os.umask(old)
    assert (tmp_path / "ds").stat().st_mode & 0o777 == 0o755
