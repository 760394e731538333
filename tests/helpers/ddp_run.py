"""Run by test_ddp.py: train/test Rgi under Lightning's DDP strategy (gloo on CPU).

Lightning's DDP launcher re-executes this script in each worker process, hence a script file
with a ``__main__`` guard rather than in-process test code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from anomalib.data import Folder
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from model_helpers import FAST_RGI, nested

from rgi_anomalib.models import Rgi


def main(mode: str, root: Path, out: Path, devices: int) -> None:
    seed_everything(0)
    datamodule = Folder(
        name="tiny",
        root=root,
        normal_dir="train/good",
        abnormal_dir="test/defect",
        mask_dir="ground_truth/defect",
        normal_test_dir="test/good",
        train_batch_size=8,
        # One image per batch in both runs, so each image meets the same float operations and
        # the comparison isolates DDP (sharding, metric and threshold sync) from batching noise.
        eval_batch_size=1,
        num_workers=0,
        seed=0,
    )
    strategy = "ddp_find_unused_parameters_true" if devices > 1 else "auto"
    engine = Engine(
        default_root_dir=out / f"{mode}_{devices}",
        logger=False,
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
    )
    model = Rgi(**nested(**FAST_RGI))
    if mode == "train":
        engine.fit(model, datamodule=datamodule)
        engine.trainer.save_checkpoint(out / "ddp.ckpt")
        return
    (metrics,) = engine.test(model, datamodule=datamodule, ckpt_path=out / "ddp.ckpt")
    if engine.trainer.is_global_zero:
        (out / f"metrics_{devices}.json").write_text(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
