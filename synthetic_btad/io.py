"""Deterministic, strict image I/O.

Reading fails loudly (with the path) on unreadable or truncated files instead of returning partial
pixels; writing produces byte-identical PNGs for identical arrays (fixed zlib level, no metadata).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from synthetic_btad.errors import ImageReadError, MaskError

IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")

# Modes that hold one value per pixel. Anything else (RGB, RGBA, LA, CMYK, ...) is refused for
# masks: guessing which channel is the mask would silently produce wrong ground truth.
_SINGLE_CHANNEL_MODES = {"1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside ``directory`` (by extension, case-insensitive), sorted."""
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _open_fully(path: Path) -> Image.Image:
    # PIL decodes lazily and, with LOAD_TRUNCATED_IMAGES, would pad a truncated file with black.
    # Another library in the process may have switched that on, so check it explicitly.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process; synthetic_btad "
            "refuses to read images that way because truncated files would be silently padded"
        )
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    return img


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def read_rgb(path: Path) -> Image.Image:
    """Decode an image completely and return it as 8-bit RGB (grey images are replicated)."""
    img = _open_fully(path)
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # 16-bit / float grey: scale to 8 bit by the type's full range, not by clipping.
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 / 65535.0 if img.mode.startswith("I") else 255.0
        img = Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8))
    return img.convert("RGB")


def binarise_mask(img: Image.Image, path: Path | str = "<mask>") -> np.ndarray:
    """Boolean foreground of a single-channel mask image.

    Masks come as 1-bit, as {0, 255}, as {0, 1} and with other non-zero levels (anti-aliased or
    re-encoded edges). A pixel is foreground when it is above half of the mask's maximum value,
    which maps all of these to the intended region; an all-zero mask gives an all-False array.
    """
    if img.mode not in _SINGLE_CHANNEL_MODES:
        raise MaskError(
            f"mask {path} has mode {img.mode!r} with {len(img.getbands())} channels; "
            "a single-channel mask (1, L, P or I) is expected"
        )
    if img.mode == "1":
        return np.asarray(img, dtype=bool).copy()
    if img.mode == "P":
        img = img.convert("L")
    arr = np.asarray(img)
    peak = arr.max() if arr.size else 0
    if peak <= 0:
        return np.zeros(arr.shape, dtype=bool)
    return arr > (float(peak) / 2.0)


def read_mask(path: Path) -> np.ndarray:
    """Decode a mask file completely and binarise it (see :func:`binarise_mask`)."""
    return binarise_mask(_open_fully(path), path)


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 HxW (grey) or HxWx3 (RGB) array as a PNG with fixed encoder settings."""
    if array.dtype != np.uint8:
        raise TypeError(f"write_png expects uint8, got {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3):
        img = Image.fromarray(array)
    else:
        raise ValueError(f"write_png expects HxW or HxWx3, got shape {array.shape}")
    # Fixed, fast compression level and no optimize pass: output depends only on the pixels
    # (level 1 is ~3x faster than 6 on these noisy textures, files ~15% larger).
    img.save(path, format="PNG", compress_level=1, optimize=False)
