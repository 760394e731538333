"""The files a unit of work keeps on disk, so that ``--resume`` can go on after an interruption.

The unit of work is one model on one dataset and seed (``work/<model>_<dataset>_seed<seed>``).
When a unit finishes, its rows (and qualitative samples) are written to ``done.json``
(``samples.npz``); a model whose weights later models load (``fit_from``) also writes them to
``fitted.pt`` right after its fit. Each category's row is also kept as soon as it is scored
(``categories/<category>.json``), because a model with its own settings per category (R-RGI with
the paper's per-category λ) predicts every such category in a pass of its own, tens of minutes
each at 128 px on a CPU. Every record carries the unit's key (``resume.unit_key``); a record is
read back only under the same key. Which records a run may reuse is ``resume.UnitResume``'s call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_path

DONE_FILE = "done.json"
SAMPLES_FILE = "samples.npz"
FITTED_FILE = "fitted.pt"
CATEGORY_DIR = "categories"


@dataclasses.dataclass
class Scored:
    """Rows saved by an earlier run: a finished unit's (``rows``: one per category, ``samples``:
    category -> qualitative samples) or one category of an unfinished unit (``rows``: that
    category's row, ``samples``: its samples). ``weights_sha256``: the digest of the shared
    weights they were scored with; None when not shared, or saved before digests were kept."""

    rows: Any
    samples: Any
    weights_sha256: str | None = None


def weights_digest(state: dict[str, Any]) -> str:
    """SHA-256 of a state dict: every entry's name, dtype, shape and bytes, in name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        else:  # extra state: its text form
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _key_matches(saved: str | None, key: str | tuple[str, ...]) -> bool:
    """Whether a saved unit's key is ``key`` (or one of several accepted keys)."""
    return saved in ((key,) if isinstance(key, str) else key)


def load_done(work: Path, key: str | tuple[str, ...]) -> Scored | None:
    """The rows and qualitative samples of a finished unit with this key, else None."""
    path = work / DONE_FILE
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    if not _key_matches(done.get("key"), key):
        return None
    return Scored(done["rows"], _load_samples(work / SAMPLES_FILE), done.get("weights_sha256"))


def save_done(
    work: Path,
    key: str,
    rows: list[dict[str, Any]],
    samples: dict[str, list] | None,
    weights_sha256: str | None = None,
) -> None:
    """Mark a unit finished: samples first, then the rows (``done.json`` is the commit)."""
    if samples:
        with atomic_path(work / SAMPLES_FILE) as tmp, tmp.open("wb") as f:
            np.savez_compressed(f, **_flatten(samples))
    with atomic_path(work / DONE_FILE) as tmp:
        tmp.write_text(_record(key=key, rows=rows, weights_sha256=weights_sha256))


def save_category(
    work: Path,
    key: str,
    category: str,
    row: dict[str, Any],
    samples: list | None,
    weights_sha256: str | None = None,
) -> None:
    """Keep one scored category of an unfinished unit (its samples first, then its row)."""
    folder = work / CATEGORY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if samples:
        with atomic_path(folder / f"{category}.npz") as tmp, tmp.open("wb") as f:
            np.savez_compressed(f, **_flatten({category: samples}))
    with atomic_path(folder / f"{category}.json") as tmp:
        tmp.write_text(_record(key=key, row=row, weights_sha256=weights_sha256))


def load_categories(work: Path, key: str | tuple[str, ...]) -> dict[str, Scored]:
    """category -> its saved row and samples, for the categories of an unfinished unit scored
    with this key."""
    found: dict[str, Scored] = {}
    for path in sorted((work / CATEGORY_DIR).glob("*.json")):
        saved = json.loads(path.read_text())
        if _key_matches(saved.get("key"), key):
            samples = _load_samples(path.with_suffix(".npz")).get(path.stem, [])
            found[path.stem] = Scored(saved["row"], samples, saved.get("weights_sha256"))
    return found


def _record(**fields: Any) -> str:
    """The JSON text of a saved record; a missing digest (weights not shared) is left out."""
    return json.dumps({k: v for k, v in fields.items() if v is not None}, indent=1) + "\n"


def drop_categories(work: Path) -> None:
    """The unit is done (``done.json`` holds every row): its per-category files go."""
    shutil.rmtree(work / CATEGORY_DIR, ignore_errors=True)


def save_fitted(work: Path, key: str, state: dict[str, Any], seconds: float) -> None:
    import torch

    with atomic_path(work / FITTED_FILE) as tmp:
        torch.save({"key": key, "state_dict": state, "fit_seconds": seconds}, tmp)


def load_fitted_state(
    work: Path, key: str | tuple[str, ...]
) -> tuple[dict[str, Any], float] | None:
    """The saved weights and fit time of a source model with this key, else None."""
    import torch

    path = work / FITTED_FILE
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not _key_matches(saved.get("key"), key):
        return None
    return saved["state_dict"], float(saved["fit_seconds"])


# Qualitative samples: category -> [{path, gt, map, pred, restored}]; None fields are left out.
_FIELDS = ("gt", "map", "pred", "restored")


def _flatten(samples: dict[str, list[dict[str, Any]]]) -> dict[str, np.ndarray]:
    flat = {}
    for cat, items in samples.items():
        for i, item in enumerate(items):
            flat[f"{cat}/{i}/path"] = np.array(str(item["path"]))
            for name in _FIELDS:
                if item.get(name) is not None:
                    flat[f"{cat}/{i}/{name}"] = np.asarray(item[name])
    return flat


def _load_samples(path: Path) -> dict[str, list[dict[str, Any]]]:
    if not path.is_file():
        return {}
    samples: dict[str, list[dict[str, Any]]] = {}
    with np.load(path, allow_pickle=False) as arrays:
        for name in sorted(arrays.files, key=lambda n: (n.split("/")[0], int(n.split("/")[1]))):
            cat, index, field = name.split("/")
            items = samples.setdefault(cat, [])
            while len(items) <= int(index):
                items.append({"path": "", **dict.fromkeys(_FIELDS)})
            value = arrays[name]
            items[int(index)][field] = str(value) if field == "path" else value
    return samples
