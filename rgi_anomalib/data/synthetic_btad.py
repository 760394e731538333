"""anomalib datamodule for the synthetic BTAD benchmark written by :mod:`synthetic_btad`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from anomalib.data import Folder
from anomalib.data.utils import TestSplitMode, ValSplitMode
from torchvision.transforms.v2 import Transform

import synthetic_btad
from rgi_anomalib.data.validate import validate_datamodule
from synthetic_btad import (
    CATEGORIES,
    SUMMARY_FILE,
    BuildParams,
    build_dataset,
    is_dataset,
    load_summary,
)

logger = logging.getLogger(__name__)

# Built from the one category list, so that anomalib's CLI rejects a wrong name at parse time.
Category = Literal[("all", *CATEGORIES)]  # type: ignore[valid-type]


class SyntheticBTAD(Folder):
    """The paper's synthetic BTAD product-03 dataset as an anomalib ``Folder`` datamodule.

    Reads ``root`` (the output of ``synthetic-btad`` / :func:`synthetic_btad.build_dataset`): train
    on ``train/good``; test on ``test/<category>`` with masks from ``ground_truth/<category>``, plus
    the clean bases in ``test/good``. When ``root`` is missing or an empty directory and
    ``build_if_missing`` is true, the dataset is built there first (in ``prepare_data``, or in
    ``setup`` when used without a Trainer) from ``bases`` / ``btad_root`` / ``mvtec_root``.
    ``setup`` reads every image and mask once and raises one ``DatasetError`` (a ValueError)
    naming each unreadable file and each mask of another size than its image.

    Args:
        root: Dataset directory.
        category: ``"all"`` or one of ``synthetic_btad.CATEGORIES`` (checked here).
        btad_root: BTAD root for building (implies ``bases="btad"``).
        mvtec_root: MVTec AD root for building (None: generated stand-in masks).
        bases: Base images when building: ``"standin"`` (generated), ``"btad"`` (from
            ``btad_root``) or ``"elpv"`` (ELPV polycrystalline solar cells, needs the
            ``elpv-dataset`` package). None: ``"btad"`` if ``btad_root`` is set, else
            ``"standin"``.
        image_size: Image side used when building (default 128). Ignored for an existing dataset,
            except for a warning when it differs from the dataset's size.
        n_train: Training images when building (None: 900; 90% of a BTAD pool under 1000 images;
            820 for ELPV).
        n_test_per_category: Test images per category when building (None: 100; 10% of a BTAD
            pool under 1000 images).
        fill: Defect colour when building: ``"mean"`` (the paper) or ``"random"`` (loud defects).
        build_if_missing: Build the dataset when ``root`` holds none.
        include_normal_test: Use ``test/good`` (the clean bases) as normal test images.
        train_batch_size, eval_batch_size, num_workers, *_augmentations, test_split_mode,
        test_split_ratio, val_split_mode, val_split_ratio: As in :class:`anomalib.data.Folder`.
        seed: Seed for building the dataset and for anomalib's random splits.
    """

    def __init__(
        self,
        root: str | Path = "./datasets/synthetic_btad",
        category: Category = "all",
        btad_root: str | Path | None = None,
        mvtec_root: str | Path | None = None,
        bases: Literal["standin", "btad", "elpv"] | None = None,
        image_size: int | None = None,
        n_train: int | None = None,
        n_test_per_category: int | None = None,
        fill: str = "mean",
        build_if_missing: bool = True,
        include_normal_test: bool = True,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 0,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float = 0.2,
        val_split_mode: ValSplitMode | str = ValSplitMode.FROM_TEST,
        val_split_ratio: float = 0.5,
        seed: int = 0,
    ) -> None:
        if category != "all" and category not in CATEGORIES:
            raise ValueError(f"category must be 'all' or one of {CATEGORIES}, got {category!r}")
        super().__init__(
            name="SyntheticBTAD",
            normal_dir="train/good",
            root=Path(root),
            # Set for real in _setup from the dataset's summary (it may not exist yet).
            abnormal_dir=None,
            normal_test_dir=None,
            mask_dir=None,
            extensions=(".png",),
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            test_split_mode=test_split_mode,
            test_split_ratio=test_split_ratio,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
        self.category = category
        self.btad_root = btad_root
        self.mvtec_root = mvtec_root
        self.bases = bases
        self.image_size = image_size
        self.n_train = n_train
        self.n_test_per_category = n_test_per_category
        self.fill = fill
        self.build_if_missing = build_if_missing
        self.include_normal_test = include_normal_test

    def build_params(self) -> BuildParams:
        """What this datamodule builds when ``root`` holds no dataset (defaults: BuildParams)."""
        return BuildParams(
            bases=self.bases,
            btad_root=self.btad_root,
            mvtec_root=self.mvtec_root,
            size=self.image_size or BuildParams.default("size"),
            seed=self.seed,
            n_train=self.n_train,
            n_test_per_category=self.n_test_per_category,
            fill=self.fill,
        )

    def ensure_dataset(self) -> synthetic_btad.Summary:
        """Return the dataset's summary, building the dataset first if allowed and needed."""
        root = Path(self.root)
        if not is_dataset(root):
            if root.exists() and (not root.is_dir() or any(root.iterdir())):
                raise FileNotFoundError(
                    f"{root} exists but is not a synthetic_btad dataset (no valid {SUMMARY_FILE}); "
                    "point root at a dataset, an empty directory or a new path"
                )
            if not self.build_if_missing:
                raise FileNotFoundError(
                    f"no synthetic_btad dataset at {root}; build it with `synthetic-btad --out "
                    f"{root}` or pass build_if_missing=True"
                )
            logger.info("building the synthetic BTAD dataset in %s", root)
            try:
                build_dataset(root, self.build_params(), notice=logger.warning)
            except synthetic_btad.OutputExistsError:
                if not is_dataset(root):  # another process finished the same build first
                    raise
        summary = load_summary(root)
        built_size = summary.data["parameters"]["size"]
        if self.image_size is not None and built_size != self.image_size:
            logger.warning(
                "dataset in %s has size %d, not the requested image_size %d; using it as is",
                root,
                built_size,
                self.image_size,
            )
        return summary

    def prepare_data(self) -> None:
        """Build the dataset if missing (Lightning calls this on one process only)."""
        self.ensure_dataset()

    def _setup(self, _stage: str | None = None) -> None:
        layout = self.ensure_dataset().layout
        available = list(layout["abnormal_dirs"])
        wanted = available if self.category == "all" else [self.category]
        missing = [c for c in wanted if c not in available]
        if missing:
            raise ValueError(f"dataset {self.root} has no category {missing}; it has {available}")
        self.normal_dir = layout["normal_dir"]
        self.abnormal_dir = [layout["abnormal_dirs"][c] for c in wanted]
        self.mask_dir = [layout["mask_dirs"][c] for c in wanted]
        normal_test = layout["normal_test_dir"]
        self.normal_test_dir = normal_test if self.include_normal_test and normal_test else None
        super()._setup(_stage)
        # Every image read whole and every mask of its image's size, before anything trains:
        # one error naming all bad files instead of a loader's traceback mid-run.
        validate_datamodule(self)
