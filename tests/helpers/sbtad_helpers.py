"""Helpers shared by the synthetic_btad tests (a uniquely named module, not ``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def make_btad_root(root: Path, n: int, size: int = 40, product: str = "03") -> Path:
    """Small synthetic BTAD-layout root with ``n`` random RGB BMPs (for error tests)."""
    ok = root / product / "train" / "ok"
    ok.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(ok / f"{i:04d}.bmp")
    return root


def save_mask(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    """Write a mask array as PNG (optionally converted to ``mode``), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if mode is not None:
        img = img.convert(mode)
    img.save(path)
    return path


def tree_hash(root: Path) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary/backup siblings of an output directory left behind (should be none)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f"{name}.tmp-")
                  or p.name.startswith(f"{name}.old-"))  # fmt: skip
