"""Mask-free inpainting: the Python API on a fixed generator and the CLI round trip."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import nested, old_flat_hparams
from PIL import Image
from torch import nn

from rgi_anomalib.inpaint import inpaint
from rgi_anomalib.models import Rgi

BIN = Path(sys.executable).parent


class LinearGenerator(nn.Module):
    """G(z) = tanh(A z): a fixed 16-dimensional manifold of 3×32×32 images."""

    def __init__(self, latent_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.weight = nn.Parameter(torch.randn(3 * 32 * 32, latent_dim) * 0.4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.weight.T).view(-1, 3, 32, 32)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / (a - b).pow(2).mean(dim=(1, 2, 3)))).median())


def test_rgi_restores_a_corrupted_block_without_being_told_where() -> None:
    torch.manual_seed(0)
    # No encoder: it would belong to the generator replaced here.
    model = Rgi(
        **nested(
            image_size=32,
            encoder_weight=0.0,
            visualizer=False,
            evaluator=False,
            post_processor=False,
        )
    ).eval()
    model.model.generator_ema = LinearGenerator()
    with torch.no_grad():
        clean = model.model.generator_ema(torch.randn(4, 16)) * 0.5 + 0.5
    missing = torch.zeros(4, 1, 32, 32)
    missing[:, :, 8:24, 8:24] = 1  # a central block, 25 % of the image
    noise = (torch.randn(4, 3, 32, 32) - 1).clamp(-1, 1) * 0.5 + 0.5  # N(-1, 1) in [-1, 1]
    corrupted = clean * (1 - missing) + noise * missing
    # RGI's defaults (λ 0.4, Adam on z and M) with a longer solve for this exact generator
    model.model.inversion = dataclasses.replace(
        model.model.inversion, iterations=300, init_candidates=256
    )
    rgi = inpaint(model, corrupted)
    masked = inpaint(model, corrupted, missing)  # Yeh et al. with the true mask
    model.model.inversion = dataclasses.replace(model.model.inversion, objective="l2")
    unmasked = inpaint(model, corrupted)  # Yeh et al. without mask
    assert rgi.mask is not None and rgi.mask.shape == (4, 1, 32, 32)
    assert _psnr(rgi.restored, clean) > _psnr(unmasked.restored, clean) + 10
    assert _psnr(masked.restored, clean) > _psnr(unmasked.restored, clean) + 10
    # M̂ marks the corrupted block
    inside, outside = rgi.mask[missing.bool()].mean(), rgi.mask[~missing.bool()].mean()
    assert inside > 0.5 > outside


def test_images_and_masks_the_checkpoint_cannot_take_are_clear_errors() -> None:
    model = Rgi(image_size=32, visualizer=False, evaluator=False, post_processor=False).eval()
    with pytest.raises(ValueError, match=r"makes 3×32×32 images; got a batch of shape \(1, 3, 64"):
        inpaint(model, torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="makes 3×32×32 images"):
        inpaint(model, torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"the mask is \(16, 16\)"):
        inpaint(model, torch.rand(1, 3, 32, 32), torch.zeros(16, 16))


def _run(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(BIN / "rgi-anomalib"), "inpaint", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_inpaint_command_round_trip(tiny_datamodule, tmp_path: Path) -> None:
    from anomalib.engine import Engine

    model = Rgi(
        **nested(
            image_size=32, max_epochs=1, iterations=10, init_candidates=8, sample_every_n_epochs=0
        )
    )
    engine = Engine(default_root_dir=tmp_path, logger=False, accelerator="cpu", devices=1)
    engine.fit(model=model, datamodule=tiny_datamodule)
    (checkpoint,) = tmp_path.rglob("*.ckpt")
    images = sorted((tiny_datamodule.root / "test" / "defect").glob("*.png"))[:2]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in images:
        (inputs / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    done = _run("--ckpt_path", checkpoint, "--input", inputs, "--output", out)
    assert done.returncode == 0, done.stderr[-2000:]
    for path in images:
        for suffix in ("restored", "mask", "preview"):
            assert (out / f"{path.stem}_{suffix}.png").is_file()
        assert Image.open(out / f"{path.stem}_restored.png").size == (32, 32)
        assert Image.open(out / f"{path.stem}_preview.png").size == (96, 32)
    # a known mask: masked inversion, no M̂ written
    mask = tmp_path / "block.png"
    block = np.zeros((32, 32), np.uint8)
    block[8:24, 8:24] = 255
    Image.fromarray(block).save(mask)
    masked = tmp_path / "masked"
    done = _run("--ckpt_path", checkpoint, "--input", images[0], "--output", masked, "--mask", mask)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (masked / f"{images[0].stem}_restored.png").is_file()
    assert not (masked / f"{images[0].stem}_mask.png").exists()
    # an image of another size is resized as the pre-processor does, and the command says so
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(big)
    done = _run("--ckpt_path", checkpoint, "--input", big, "--output", tmp_path / "x")
    assert done.returncode == 0 and "64×64 resized to 32×32" in done.stdout, done.stderr[-2000:]
    assert Image.open(tmp_path / "x" / "big_restored.png").size == (32, 32)
    # errors name the file and what was expected
    small_mask = tmp_path / "small.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(small_mask)
    done = _run(
        "--ckpt_path", checkpoint, "--input", images[0], "--output", tmp_path / "y",
        "--mask", small_mask,
    )  # fmt: skip
    assert done.returncode == 2 and "same size" in done.stderr


def test_load_model_reads_a_checkpoint_written_before_encoder_weight_as_a_plain_gan(
    tmp_path: Path,
) -> None:
    from rgi_anomalib.inpaint import load_model
    from rgi_anomalib.models.gan_inversion.lightning_model import CHECKPOINT_CLASS_KEY

    arch = {"image_size": 32, "latent_dim": 16, "base_width": 8, "max_width": 32}
    plain = Rgi(**nested(**arch, encoder_weight=0.0))
    flat = old_flat_hparams(**arch, lam=0.4, finetune_iterations=0, lr_finetune=1e-5)
    del flat["encoder_weight"]  # older still: written before encoder_weight existed
    flat["finetune_params"] = []
    old = {
        "state_dict": plain.state_dict(),
        "hyper_parameters": flat,
        "pytorch-lightning_version": "2.5.0",
        CHECKPOINT_CLASS_KEY: "Rgi",
    }
    path = tmp_path / "old.ckpt"
    torch.save(old, path)
    loaded = load_model(path)
    assert loaded.gan_training.encoder_weight == 0.0
    assert not hasattr(loaded.model, "encoder")
    torch.testing.assert_close(
        loaded.model.generator_ema.state_dict(), plain.model.generator_ema.state_dict()
    )
