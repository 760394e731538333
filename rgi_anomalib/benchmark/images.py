"""The harness's one loading layer: lists of image (and mask) paths as anomalib ``ImageBatch``es.

Every dataset source (datamodule, built synthetic_btad, Folder root) ends as path lists in a
``DatasetInfo``; this module reads them, for fitting and for prediction, in one way: images in
[0, 1], masks bool, non-square images resized or padded (``square``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """How an image meets a square model of side ``size``: ``square="resize"`` leaves sizing to
    the model's pre-processor; ``"pad"`` brings it to ``pad_shape`` (the dataset's median shape),
    pads it to a square with its own edge pixels and resizes that to ``size``."""

    square: str = "resize"
    size: int | None = None
    pad_shape: tuple[int, int] | None = None


AS_IS = Geometry()  # resize by the model's own pre-processor


class ImageListDataset:
    """A map-style dataset of ImageItems (images in [0, 1], masks bool)."""

    def __init__(
        self,
        images: list[Path],
        masks: list[Path | None] | None,
        label: int | list[int],
        geometry: Geometry = AS_IS,
    ) -> None:
        self.images, self.masks, self.geometry = images, masks, geometry
        self.labels = label if isinstance(label, list) else [label] * len(images)
        # image path -> (top, left, height, width) of the original inside its padded square,
        # as fractions of the side; filled as images are read (square="pad" only).
        self.boxes: dict[str, tuple[float, float, float, float]] = {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        import torch
        from anomalib.data import ImageItem
        from anomalib.data.utils import read_image, read_mask

        path = self.images[index]
        image = read_image(path, as_tensor=True)
        mask_path = self.masks[index] if self.masks else None
        if mask_path is not None:
            mask = read_mask(mask_path, as_tensor=True).bool()
        else:
            mask = torch.zeros(image.shape[-2:], dtype=torch.bool)
        if self.geometry.square == "pad":
            image, mask = self._pad(str(path), image, mask)
        return ImageItem(
            image=image,
            gt_label=torch.tensor(self.labels[index]),
            gt_mask=mask,
            image_path=str(path),
            mask_path=str(mask_path) if mask_path else None,
        )

    def _pad(self, path: str, image: Any, mask: Any) -> tuple[Any, Any]:
        """Pad to a square with replicated edge pixels (no artificial border for a model to
        flag) and resize it to the model's size (images of different sizes then batch); the
        mask is padded with normal pixels; the box is kept for cropping maps."""
        import torch.nn.functional as F

        pad_shape, size = self.geometry.pad_shape, self.geometry.size
        if pad_shape is not None and tuple(image.shape[-2:]) != pad_shape:
            # to the dataset's median shape first (KolektorSDD: heights 617-642, an aspect
            # change of at most 4 %), so that every image has the same box
            image = F.interpolate(image[None], size=pad_shape, mode="bilinear", antialias=True)
            image = image[0].clamp(0, 1)
            mask = F.interpolate(mask[None, None].float(), size=pad_shape)[0, 0].bool()
        height, width = image.shape[-2:]
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        pad = (left, side - width - left, top, side - height - top)
        image = F.pad(image[None], pad, mode="replicate")[0]
        mask = F.pad(mask[None].float(), pad)[0].bool()
        self.boxes[path] = (top / side, left / side, height / side, width / side)
        if size is not None and side != size:
            image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True)[
                0
            ].clamp(0, 1)
            mask = F.interpolate(mask[None, None].float(), size=(size, size))[0, 0]
            mask = mask.bool()
        return image, mask


def crop_to_box(array: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The part of a square map that covers the original (unpadded) image."""
    size_h, size_w = array.shape[-2:]
    top, left, height, width = box
    y0, x0 = round(top * size_h), round(left * size_w)
    y1, x1 = y0 + max(1, round(height * size_h)), x0 + max(1, round(width * size_w))
    return array[..., y0:y1, x0:x1]


def image_loader(
    images: list[Path],
    masks: list[Path | None] | None,
    label: int | list[int],
    batch_size: int,
    *,
    shuffle: bool = False,
    geometry: Geometry = AS_IS,
) -> Any:
    """A DataLoader of ``ImageBatch``es in the given order (``shuffle`` for training only)."""
    from anomalib.data import ImageBatch
    from torch.utils.data import DataLoader

    return DataLoader(
        ImageListDataset(images, masks, label, geometry),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=ImageBatch.collate,
        num_workers=0,
    )
