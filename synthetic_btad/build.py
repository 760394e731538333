"""Build a synthetic BTAD dataset (paper Appendix F) atomically into an anomalib Folder layout."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from synthetic_btad.errors import OutputExistsError
from synthetic_btad.layout import SUMMARY_FILE
from synthetic_btad.params import BuildParams
from synthetic_btad.plan import Notice, plan_bases, plan_masks
from synthetic_btad.summary import Summary, is_dataset, summary_data
from synthetic_btad.writer import Progress, Writer


def _check_output(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    if not overwrite:
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True (--overwrite)")
    if not is_dataset(out):
        # --overwrite deletes the old directory: only ever do that to our own output.
        raise OutputExistsError(
            f"refusing to overwrite {out}: it is not a synthetic_btad dataset (no valid "
            f"{SUMMARY_FILE}); remove it yourself or choose another --out"
        )


def _umask() -> int:
    """The process's umask (POSIX reads it only by setting it; set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: Path, out: Path, overwrite: bool, token: str) -> None:
    """Move the finished temporary tree to ``out`` (rename: never a half-written dataset)."""
    _check_output(out, overwrite)
    old = None
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            old = out.with_name(f"{out.name}.old-{token}")
            out.replace(old)
    tmp.replace(out)
    if old is not None:
        shutil.rmtree(old)


def build_dataset(
    out: Path | str,
    params: BuildParams | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    notice: Notice | None = None,
    **changes: Any,
) -> Summary:
    """Write the synthetic BTAD benchmark to ``out`` and return its summary.

    The dataset is a function of ``params`` (``BuildParams``; its fields may also be given as
    keyword arguments, which override it) only: same parameters => identical bytes.
    ``bases`` picks the defect-free base images: generated stand-ins, BTAD or the ELPV solar
    cells; without ``mvtec_root`` the masks are generated stand-ins. Stand-ins are labelled as
    such in the manifest and summary, and every source is announced through ``notice``. Counts
    left as None follow the paper (900 train images, 100 defect bases = 100 test images per
    category) when enough images exist; ELPV keeps the 100 defect bases and trains on the other
    820 cells. Each category's i-th test image is defect-filled from base i with a mask drawn
    for it at random; ``fill="mean"`` is the paper's mean-colour fill, ``"random"`` paints each
    defect one random colour (loud defects). Everything is written into a temporary sibling of
    ``out`` and renamed at the end.
    """
    p = dataclasses.replace(params or BuildParams(), **changes)
    say = notice or (lambda _msg: None)
    notices: list[str] = []

    def note(msg: str) -> None:
        notices.append(msg)
        say(msg)

    out = Path(out)
    _check_output(out, overwrite)
    plan = plan_bases(p, note)
    library = plan_masks(p, note)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    # mkdtemp makes it 0700; the published dataset gets the mode mkdir would give (umask).
    tmp.chmod(0o777 & ~_umask())
    try:
        writer = Writer(tmp, p, plan, progress)
        writer.make_dirs()
        writer.write_train()
        writer.write_tests(library)
        writer.write_manifest()
        data = summary_data(p, plan, library, writer.rows, notices)
        # The summary is written last: its presence marks a complete dataset.
        (tmp / SUMMARY_FILE).write_text(
            json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _publish(tmp, out, overwrite, tmp.name.rsplit("-", 1)[-1])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Summary(root=out, data=data)
