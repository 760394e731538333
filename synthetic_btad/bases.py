"""Defect-free base images: BTAD product 03 from disk, ELPV solar cells, or generated stand-ins."""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from synthetic_btad.errors import LayoutError, MissingDependencyError, NotEnoughDataError
from synthetic_btad.io import list_images, read_rgb

BTAD_LAYOUT = "<root>/<product>/train/ok/*.bmp (also test/ok, test/ko, ground_truth/ko)"

# Where the base images come from (``build_dataset(bases=...)``, ``--bases``).
BASE_SOURCES = ("standin", "btad", "elpv")
ELPV_PACKAGE = "elpv-dataset"
ELPV_LICENSE = "CC BY-NC-SA 4.0"
ELPV_LABEL = f"ELPV polycrystalline cells, {ELPV_LICENSE}"
ELPV_INSTALL = "pip install elpv-dataset  (in this repository: pip install -e '.[elpv]')"


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


@dataclass(frozen=True)
class ElpvPool:
    """The defect-free polycrystalline ELPV cells: image paths, sorted, and where they came from."""

    paths: list[Path]
    data_dir: Path  # the package's data folder; manifest sources are relative to it
    version: str
    n_cells: int  # all cells listed in the package's labels.csv


def elpv_pool() -> ElpvPool:
    """Defect-free polycrystalline cells of the ``elpv-dataset`` package (sorted by file name).

    The package ships 2,624 300x300 8-bit grey electroluminescence images of solar cells, each with
    a defect probability (0, 1/3, 2/3 or 1) and a module type (``mono`` or ``poly``). The cells
    with probability 0 and type ``poly`` (920 in version 1.0.0) are the pool. The selection is read
    from the package's ``labels.csv``, the file its ``elpv_dataset.utils.load_dataset()`` reads, so
    that only the selected images are decoded (``load_dataset`` decodes all 2,624).
    Raises :class:`MissingDependencyError` with the pip command when the package is absent.
    """
    try:
        import elpv_dataset
        import elpv_dataset.utils
    except ImportError as exc:
        raise MissingDependencyError(
            f"bases='elpv' needs the {ELPV_PACKAGE} package ({ELPV_LABEL}), which is not "
            f"installed: {ELPV_INSTALL}"
        ) from exc
    try:
        version = importlib.metadata.version(ELPV_PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree
        version = str(getattr(elpv_dataset, "__version__", "unknown"))
    data_dir = Path(elpv_dataset.utils.__file__).resolve().parent / "data"
    labels = data_dir / "labels.csv"
    if not labels.is_file():
        raise LayoutError(
            f"{ELPV_PACKAGE} {version} has no {labels}; expected the package's labels.csv "
            "(lines '<image path> <defect probability> <mono|poly>')"
        )
    rows = []
    for n, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, prob, kind = parts[0], float(parts[1]), parts[2]
        except (IndexError, ValueError) as exc:
            raise LayoutError(
                f"{labels} line {n} is not '<path> <probability> <type>': {line!r}"
            ) from exc
        rows.append((rel, prob, kind))
    paths = sorted(data_dir / rel for rel, prob, kind in rows if prob == 0.0 and kind == "poly")
    if not paths:
        raise NotEnoughDataError(f"{labels} lists no defect-free (probability 0) poly cells")
    return ElpvPool(paths=paths, data_dir=data_dir, version=version, n_cells=len(rows))


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
    available: int | None,
    n_train: int | None,
    n_test: int | None,
    keep_paper_test: bool = False,
) -> tuple[int, int, str]:
    """Number of training images and of defect bases (= test images per category).

    ``available`` is the size of the real pool (None for generated bases). Unset counts follow the
    paper (900 train, 100 bases) when there are enough images; with fewer real images the same
    90/10 proportion is used, or, with ``keep_paper_test`` and more than 100 images, the paper's
    100 defect bases and the rest for training (the ELPV pool: 820 + 100 of 920, so that each
    category has the paper's 100 test images). Explicit counts that do not fit raise
    :class:`NotEnoughDataError`.
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
        if keep_paper_test and available > 100:
            return (
                available - 100,
                100,
                f"only {available} images: the paper's 100 defect bases, the other "
                f"{available - 100} for training",
            )
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
