"""Defect-free base images: BTAD product 03 from disk, or generated product-03-like stand-ins."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from synthetic_btad.errors import LayoutError, NotEnoughDataError
from synthetic_btad.io import list_images, read_rgb

BTAD_LAYOUT = "<root>/<product>/train/ok/*.bmp (also test/ok, test/ko, ground_truth/ko)"


def btad_pool(root: Path | str, product: str = "03", use_test_ok: bool = False) -> list[Path]:
    """Defect-free images of one BTAD product: ``train/ok`` (+ ``test/ok`` if asked), sorted."""
    root = Path(root)
    if not root.exists():
        raise LayoutError(f"BTAD root {root} does not exist; expected {BTAD_LAYOUT}")
    if not root.is_dir():
        raise LayoutError(f"BTAD root {root} is not a directory; expected {BTAD_LAYOUT}")
    ok_dir = root / product / "train" / "ok"
    if not ok_dir.is_dir():
        hint = ""
        if (root / "train" / "ok").is_dir():
            hint = f" (it looks like the product folder itself; pass its parent {root.parent})"
        found = sorted(p.name for p in root.iterdir())[:8]
        raise LayoutError(
            f"BTAD root {root} has no {product}/train/ok folder; expected {BTAD_LAYOUT} with "
            f"product {product!r}{hint} (found: {found or 'an empty directory'})"
        )
    pool = list_images(ok_dir)
    if use_test_ok and (root / product / "test" / "ok").is_dir():
        pool += list_images(root / product / "test" / "ok")
    if not pool:
        raise NotEnoughDataError(f"BTAD folder {ok_dir} contains no images (.bmp/.png/.jpg)")
    return pool


def load_base(path: Path, size: int) -> np.ndarray:
    """Read a photo, centre-crop it to a square and resize it to ``size`` (Lanczos), uint8 RGB."""
    img = read_rgb(path)
    w, h = img.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


# Generated stand-in: a machined/brushed metal surface. Few random parameters per image
# (orientation jitter, 5 groove phases and gains, grey level, illumination gradient and highlight,
# noise level) so that a small GAN can learn the family quickly; everything is defined in
# normalised coordinates so the family is the same at every output size.
_GROOVE_FREQS = (2.0, 5.0, 11.0, 23.0, 37.0)  # cycles per image width, across the grooves
_GROOVE_AMPS = (0.14, 0.12, 0.088, 0.064, 0.048)
_TINT = np.array([1.0, 0.975, 0.94])


def generate_base(rng: np.random.Generator, size: int) -> np.ndarray:
    """One procedural product-03-like image, uint8 RGB ``size`` x ``size``."""
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
    x, y = np.meshgrid(coords, coords)
    theta = math.radians(rng.normal(0.0, 2.5))  # grooves nearly horizontal, slightly jittered
    v = -x * math.sin(theta) + y * math.cos(theta)
    u = x * math.cos(theta) + y * math.sin(theta)

    grooves = np.zeros_like(x)
    for f, a in zip(_GROOVE_FREQS, _GROOVE_AMPS, strict=True):
        gain = rng.uniform(0.7, 1.3)
        phase = rng.uniform(0.0, 2 * math.pi)
        if f < 0.45 * size:  # skip components the raster cannot carry (no aliasing)
            grooves += a * gain * np.sin(2 * math.pi * f * v + phase)
    # A weak, slow modulation along the grooves (tool wear), so rows are not identical.
    grooves += 0.012 * np.sin(2 * math.pi * 1.5 * u + rng.uniform(0, 2 * math.pi))

    level = rng.uniform(0.42, 0.58)
    g_dir = rng.uniform(0.0, 2 * math.pi)
    gradient = rng.uniform(0.0, 0.12) * (x * math.cos(g_dir) + y * math.sin(g_dir))
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    spot_sigma = rng.uniform(0.25, 0.45)
    spot = rng.uniform(0.0, 0.08) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * spot_sigma**2))
    illumination = 1.0 + gradient + spot

    grey = level * (1.0 + grooves) * illumination
    noise_sigma = rng.uniform(0.004, 0.012)
    rgb = grey[..., None] * _TINT + rng.normal(0.0, noise_sigma, (size, size, 3))
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def resolve_counts(
    available: int | None, n_train: int | None, n_test: int | None
) -> tuple[int, int, str]:
    """Number of training images and of defect bases (= test images per category).

    ``available`` is the size of the real pool (None for generated bases). Unset counts follow the
    paper (900 train, 100 bases) when there are enough images; with fewer real images the same
    90/10 proportion is used. Explicit counts that do not fit raise :class:`NotEnoughDataError`.
    """
    for name, val in (("n_train", n_train), ("n_test_per_category", n_test)):
        if val is not None and val < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")
    if available is None:
        rule = "generated: unset counts follow the paper (900 train, 100 bases)"
        if n_train is not None and n_test is not None:
            rule = "generated: as requested"
        return (n_train or 900), (n_test or 100), rule
    if n_train is not None and n_test is not None:
        if n_train + n_test > available:
            raise NotEnoughDataError(
                f"fewer base images than requested: n_train={n_train} + "
                f"n_test_per_category={n_test} = {n_train + n_test} > {available} available"
            )
        return n_train, n_test, "as requested"
    if n_train is None and n_test is None:
        if available >= 1000:
            return 900, 100, "paper default (900 train, 100 bases)"
        if available < 2:
            raise NotEnoughDataError(f"need at least 2 base images, found {available}")
        n_test = max(1, available // 10)
        return available - n_test, n_test, f"only {available} images: 90/10 split as in the paper"
    if n_test is not None:
        n_train = min(900, available - n_test)
        if n_train < 1:
            raise NotEnoughDataError(
                f"fewer base images than requested: n_test_per_category={n_test} leaves no "
                f"training images out of {available}"
            )
        return n_train, n_test, "n_test_per_category as requested, n_train = rest (max 900)"
    assert n_train is not None
    n_test = min(100, available - n_train)
    if n_test < 1:
        raise NotEnoughDataError(
            f"fewer base images than requested: n_train={n_train} leaves no defect bases "
            f"out of {available}"
        )
    return n_train, n_test, "n_train as requested, n_test_per_category = rest (max 100)"
