"""Check a dataset's files before anything is trained on them.

A corrupt image (a truncated PNG, a file that is no image) otherwise stops a run deep inside a
data loader, with a long traceback and no file name; a mask of another size than its image is
accepted while training and fails only when the maps are scored ("stack expects each tensor to be
equal size"). ``validate_samples`` reads every image (and mask) completely, once, and raises one
``DatasetError`` that names every bad file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rgi_anomalib.utils import OneLineError, print_uncaught_as_one_line

MAX_LISTED = 20  # bad files listed in the message; the rest are counted

# (path, mtime_ns, size in bytes) -> (width, height) of files read completely without error:
# a datamodule set up again, or checked again at fit start, costs a stat per file.
_READ_OK: dict[tuple[str, int, int], tuple[int, int]] = {}


class DatasetError(OneLineError, ValueError):
    """Files of a dataset that cannot be used: ``problems`` holds one line per bad file."""

    def __init__(self, problems: list[str], what: str = "the dataset") -> None:
        self.problems = list(problems)
        listed = self.problems[:MAX_LISTED]
        more = len(self.problems) - len(listed)
        lines = [f"{len(self.problems)} bad file(s) in {what}; fix or remove them:"]
        lines += [f"  {p}" for p in listed]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == ""


def _read_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image decoded completely; OSError (or a PIL error) if it cannot be.

    PIL decodes lazily: ``Image.open`` reads the header only, ``load()`` the pixels, which is
    where a truncated file fails. A library that switched on ``LOAD_TRUNCATED_IMAGES`` would make
    PIL pad such a file with black: it is read here with the switch off."""
    from PIL import Image, ImageFile

    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _READ_OK:
        return _READ_OK[key]
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise OSError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on in this process: a truncated file "
            "cannot be told from a whole one"
        )
    with Image.open(path) as image:
        image.load()
        size = image.size
    _READ_OK[key] = size
    return size


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_one(pair: tuple[Path, Path | None]) -> list[str]:
    image, mask = pair
    problems = []
    try:
        size = _read_size(image)
    except Exception as exc:  # any failure to read is the file's problem
        problems.append(f"{image}: cannot be read ({_describe(exc)})")
        size = None
    if mask is not None:
        try:
            mask_size = _read_size(mask)
        except Exception as exc:
            problems.append(f"{mask}: mask of {image.name} cannot be read ({_describe(exc)})")
        else:
            if size is not None and mask_size != size:
                problems.append(
                    f"{mask}: mask is {mask_size[0]}x{mask_size[1]} (width x height), its image "
                    f"{image} is {size[0]}x{size[1]}"
                )
    return problems


def _workers(n: int) -> int:
    # PIL releases the GIL while decoding: a few threads overlap file reads and decoding.
    return max(1, min(8, os.cpu_count() or 1, n // 64 + 1))


def find_problems(samples: Iterable[tuple[Any, Any]]) -> list[str]:
    """One line per unreadable image or mask and per mask whose size differs from its image's,
    in the order of ``samples`` ((image path, mask path or None) pairs; each pair read once)."""
    pairs: list[tuple[Path, Path | None]] = []
    seen = set()
    for image, mask in samples:
        pair = (Path(str(image)), None if _missing(mask) else Path(str(mask)))
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    if not pairs:
        return []
    with ThreadPoolExecutor(_workers(len(pairs))) as pool:
        found = list(pool.map(_check_one, pairs))
    # a file listed in several pairs (a shared mask) is reported once
    return list(dict.fromkeys(p for problems in found for p in problems))


def validate_samples(samples: Any, what: str = "the dataset") -> None:
    """Raise one ``DatasetError`` naming every bad file of ``samples``, else return.

    ``samples``: (image path, mask path or None) pairs, or an anomalib samples DataFrame
    (columns ``image_path`` and, optionally, ``mask_path``; an empty or NaN mask means none).
    Every image and mask is decoded completely (a truncated file fails) and each mask must have
    its image's width and height. ``what`` names the dataset in the message."""
    problems = find_problems(_pairs(samples))
    if problems:
        print_uncaught_as_one_line()  # under anomalib's CLI: one line, not a rich traceback
        raise DatasetError(problems, what)


def _pairs(samples: Any) -> list[tuple[Any, Any]]:
    columns = getattr(samples, "columns", None)
    if columns is None:
        return [(image, mask) for image, mask in samples]
    if "image_path" not in columns:
        raise ValueError("a samples DataFrame needs an 'image_path' column")
    masks = samples["mask_path"] if "mask_path" in columns else [None] * len(samples)
    return list(zip(samples["image_path"], masks, strict=True))


SUBSETS = ("train_data", "val_data", "test_data")


def datamodule_samples(
    datamodule: Any, subsets: tuple[str, ...] = SUBSETS
) -> list[tuple[Any, Any]]:
    """The (image, mask) pairs of a set-up datamodule's ``subsets`` (those it has)."""
    pairs: list[tuple[Any, Any]] = []
    for name in subsets:
        dataset = getattr(datamodule, name, None)
        samples = getattr(dataset, "samples", None)
        if samples is not None and len(samples):
            pairs += _pairs(samples)
    return pairs


def validate_datamodule(datamodule: Any, subsets: tuple[str, ...] = SUBSETS) -> None:
    """Raise one ``DatasetError`` naming every unreadable image and every mask of another size
    than its image among the samples of ``datamodule`` (an anomalib datamodule after
    ``setup()``; ``subsets``: which of its ``train_data``, ``val_data``, ``test_data``).
    ``None`` (a model fitted on bare dataloaders) and a datamodule without samples pass. Files
    already read whole in this process and unchanged since are not decoded again."""
    if datamodule is None:
        return
    name = getattr(datamodule, "name", None) or type(datamodule).__name__
    root = getattr(datamodule, "root", None)
    what = f"datamodule {name}" + (f" ({root})" if root else "")
    validate_samples(datamodule_samples(datamodule, subsets), what)
