"""Mask-free inpainting with a fitted RGI / R-RGI model (paper section 4.1): G(ẑ) restores the
corrupted pixels without being told where they are, and M̂ says where they were.

Python::

    from rgi_anomalib.inpaint import inpaint, load_model
    model = load_model("model.ckpt")              # Rgi, RRgi or AnoGan checkpoint
    out = inpaint(model, images)                  # images: B×C×H×W in [0, 1]
    out.restored, out.mask                        # B×C×H×W, B×1×H×W (None for AnoGAN)

With ``missing`` (B×1×H×W, 1 = pixel unknown) the same call is a masked inversion: the baselines
the paper compares with (l2 inversion with the true mask, Yeh et al. 2017; with generator
fine-tuning when the model is R-RGI, Pan et al. 2021).

Command line::

    rgi-anomalib inpaint --ckpt_path model.ckpt --input img.png|folder --output out/ [--mask m.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgi_anomalib.utils import IMAGE_EXTENSIONS

CLASSES = ("Rgi", "RRgi", "AnoGan")


@dataclass
class Inpainting:
    """Restored images and the estimated corruption mask, both in [0, 1]."""

    restored: Any  # B×C×H×W tensor
    mask: Any | None  # B×1×H×W tensor (|M̂| in grey); None without a mask (AnoGAN, masked)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's dictionary, unpickled with ``weights_only=True``: tensors, plain data and
    anomalib's allow-listed enums only, so a crafted file cannot run code when it is opened (as
    anomalib's own ``load_from_checkpoint`` does)."""
    import pickle

    import torch
    from anomalib.utils.serialization import anomalib_safe_globals

    try:
        with anomalib_safe_globals():
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message opens with advice to retry with unrestricted unpickling (unsafe for
        # a file from someone else): pass on only the line that names the refused object.
        lines = [ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln]
        if not lines:
            raise ValueError(f"--ckpt_path {path}: not a readable PyTorch checkpoint") from err
        msg = (
            f"--ckpt_path {path}: refused without unpickling it: it holds objects other than "
            f"weights and plain data ({lines[0]}). Only checkpoints of Rgi / RRgi / AnoGan load."
        )
        raise ValueError(msg) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"--ckpt_path {path}: not a readable PyTorch checkpoint ({err})") from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(f"--ckpt_path {path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _model_class_name(checkpoint: dict[str, Any], path: Path, model: str | None) -> str:
    """Rgi / RRgi / AnoGan: recorded in the checkpoint, else ``model``. A checkpoint of another
    anomalib model (PatchCore, ...) has no generator: say so rather than suggest ``--model``."""
    from rgi_anomalib.models.gan_inversion.lightning_model import CHECKPOINT_CLASS_KEY

    if not any(key.startswith("model.generator") for key in checkpoint["state_dict"]):
        msg = (
            f"--ckpt_path {path} is not a GAN-inversion checkpoint (it has no generator); "
            f"inpaint restores images with a fitted {', '.join(CLASSES)} model only"
        )
        raise ValueError(msg)
    name = model or checkpoint.get(CHECKPOINT_CLASS_KEY)
    if name is None:
        msg = f"{path} does not say which model wrote it; pass --model one of {', '.join(CLASSES)}"
        raise ValueError(msg)
    by_lower = {c.lower(): c for c in CLASSES}
    if name.lower() not in by_lower:
        raise ValueError(f"--model must be one of {', '.join(CLASSES)}, got {name!r}")
    return by_lower[name.lower()]


def load_model(ckpt_path: str | Path, model: str | None = None) -> Any:
    """An Rgi / RRgi / AnoGan module from its checkpoint (class read from the checkpoint, or
    ``model`` for checkpoints written before the class was recorded). The file is read with
    ``weights_only=True``: one that needs arbitrary unpickling is refused without running it."""
    from rgi_anomalib import models

    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such checkpoint file")
    checkpoint = _read_checkpoint(path)
    cls = getattr(models, _model_class_name(checkpoint, path, model))
    # Flat hyper-parameters (older checkpoints) are read in the nested form by the class's
    # load_from_checkpoint; anomalib's reads the file again with weights_only=True.
    return cls.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()


def _check(model: Any, images: Any, missing: Any | None) -> None:
    size, channels = model.model.image_size, model.model.channels
    if images.ndim != 4 or images.shape[1] != channels or images.shape[-2:] != (size, size):
        msg = (
            f"the checkpoint's generator makes {channels}×{size}×{size} images; got a batch of "
            f"shape {tuple(images.shape)} (resize or crop the images to {size}×{size} first)"
        )
        raise ValueError(msg)
    if missing is not None and tuple(missing.shape[-2:]) != (size, size):
        msg = f"the mask is {tuple(missing.shape[-2:])} but the images are {size}×{size}"
        raise ValueError(msg)


def inpaint(model: Any, images: Any, missing: Any | None = None) -> Inpainting:
    """Restore a batch ``images`` (B×C×H×W in [0, 1]) with a fitted GAN-inversion model.

    Without ``missing``: the model's own solve (RGI / R-RGI: mask-free inpainting). With
    ``missing`` (B×1×H×W or H×W, 1 = unknown): an l2 inversion that ignores those pixels, with
    the model's generator fine-tuning if it has any."""
    import torch

    from rgi_anomalib.models.gan_inversion.anomaly_map import to_grey

    if missing is not None:
        missing = torch.as_tensor(missing, dtype=torch.float32)
        missing = missing.expand(images.shape[0], 1, *missing.shape[-2:]).contiguous()
    _check(model, images, missing)
    config = model.model.inversion
    if missing is not None:
        config = dataclasses.replace(config, objective="l2")
    result = model.model.invert(images * 2 - 1, missing=missing, inversion=config)
    restored = (result.restored * 0.5 + 0.5).clamp(0, 1)
    mask = None if result.mask is None else to_grey(result.mask.abs()).clamp(0, 1)
    return Inpainting(restored=restored, mask=mask)


# --- command line ------------------------------------------------------------------------------
def _inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            return files
        raise ValueError(f"--input {path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in it")
    raise FileNotFoundError(f"--input {path}: no such file or directory")


def _mask_for(mask: Path | None, image: Path) -> Path | None:
    if mask is None or mask.is_file():
        return mask
    for candidate in (mask / f"{image.stem}_mask.png", mask / f"{image.stem}.png"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"--mask {mask}: no {image.stem}_mask.png or {image.stem}.png in it")


def _save(tensor: Any, path: Path) -> None:
    from torchvision.utils import save_image

    from rgi_anomalib.utils import atomic_path

    with atomic_path(path) as tmp:
        save_image(tensor, tmp, format="png")


@dataclass
class _Job:
    """One input image, read and resized to the model's size, and its known mask if any."""

    path: Path
    image: Any  # 1×C×S×S in [0, 1]
    missing: Any | None  # 1×1×S×S, 1 = unknown
    resized_from: tuple[int, int] | None  # (H, W) of the file when it was not S×S


def _read_job(path: Path, mask_path: Path | None, size: int) -> _Job:
    """Read ``path`` (and its mask) and resize to size×size as the model's pre-processor does
    (bilinear, antialiased; a known mask with nearest neighbours, so it stays binary)."""
    from anomalib.data.utils import read_image, read_mask
    from torchvision.transforms.v2.functional import InterpolationMode, resize

    try:
        image = read_image(path, as_tensor=True)[None]
    except Exception as err:  # PIL/OpenCV raise many types for a bad file
        raise ValueError(f"{path}: not a readable image ({err})") from err
    missing = None
    if mask_path is not None:
        missing = read_mask(mask_path, as_tensor=True).float()[None, None]
        if missing.shape[-2:] != image.shape[-2:]:
            msg = (
                f"--mask {mask_path} is {tuple(missing.shape[-2:])}, the image {path} is "
                f"{tuple(image.shape[-2:])}: they must have the same size"
            )
            raise ValueError(msg)
    original = tuple(image.shape[-2:])
    if original == (size, size):
        return _Job(path, image, missing, None)
    image = resize(image, [size, size], antialias=True).clamp(0, 1)
    if missing is not None:
        missing = resize(missing, [size, size], InterpolationMode.NEAREST)
    return _Job(path, image, missing, original)  # type: ignore[arg-type]


def _write(job: _Job, result: Inpainting, out: Path) -> None:
    import torch

    stem = job.path.stem
    _save(result.restored[0], out / f"{stem}_restored.png")
    panels = [job.image[0], result.restored[0]]
    if result.mask is not None:
        _save(result.mask[0], out / f"{stem}_mask.png")
        panels.insert(1, result.mask[0].expand_as(job.image[0]))
    _save(torch.cat(panels, dim=-1), out / f"{stem}_preview.png")


def run(args: argparse.Namespace) -> int:
    model = load_model(args.ckpt_path, args.model)
    mask_arg = Path(args.mask) if args.mask else None
    if mask_arg is not None and not mask_arg.exists():
        raise FileNotFoundError(f"--mask {mask_arg}: no such file or directory")
    size = model.model.image_size
    # Every input is read and checked before the first output is written, so a bad file in a
    # folder never leaves the output folder half-written.
    jobs = [_read_job(p, _mask_for(mask_arg, p), size) for p in _inputs(Path(args.input))]
    for job in jobs:
        if job.resized_from is not None:
            height, width = job.resized_from
            print(f"{job.path}: {width}×{height} resized to {size}×{size} (the model's size)")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        try:
            result = inpaint(model, job.image, job.missing)
        except ValueError as err:
            raise ValueError(f"{job.path}: {err}") from err
        _write(job, result, out)
        print(f"{job.path} -> {out / (job.path.stem + '_restored.png')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="rgi-anomalib inpaint",
        description="Restore images with a fitted RGI / R-RGI (mask-free) or AnoGAN checkpoint; "
        "writes <stem>_restored.png, <stem>_mask.png (M̂) and <stem>_preview.png "
        "(input | M̂ | restored) per image.",
    )
    p.add_argument("--ckpt_path", required=True, help="checkpoint of a fitted Rgi/RRgi/AnoGan")
    p.add_argument(
        "--input",
        required=True,
        help="an image or a folder of images; each is resized to the checkpoint's image size "
        "as its pre-processor does (outputs are at that size)",
    )
    p.add_argument("--output", required=True, help="output folder (created)")
    p.add_argument(
        "--mask",
        help="known corruption mask (white = missing): one image for all inputs, or a folder "
        "with <stem>_mask.png; switches to masked inversion (the paper's baselines)",
    )
    p.add_argument("--model", help="Rgi, RRgi or AnoGan, for checkpoints that do not record it")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"rgi-anomalib inpaint: error: {err}", file=sys.stderr)
        return 2
