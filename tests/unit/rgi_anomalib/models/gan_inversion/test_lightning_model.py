"""Rgi / RRgi / AnoGan as anomalib models: construction errors, Engine fit/test, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import FAST_RGI, nested, old_flat_hparams

from rgi_anomalib.models import AnoGan, Rgi, RRgi
from rgi_anomalib.models.gan_inversion.solver import InversionConfig


def test_defaults_are_fast_and_paper_configs_load_the_paper_protocol() -> None:
    """Defaults: the fast configuration of BENCHMARKS.md on the FastGAN tile generator
    (docs/generator.md); whole images keep the 50-iteration solve; configs/model/*_paper.yaml:
    Appendix G."""
    rgi, rrgi, anogan = Rgi(), RRgi(), AnoGan()
    arch = rgi.architecture
    assert (arch.backbone, arch.tile_size, arch.base_width, arch.latent_dim) == (
        "fastgan",
        32,
        16,
        64,
    )
    assert (rgi.inversion.objective, rgi.inversion.lam) == ("rgi", 0.4)
    assert (rgi.inversion.mask_update, rgi.inversion.lr_schedule) == ("adam", "cosine")
    assert rgi.inversion.iterations == 30 and rgi.inversion.finetune_iterations == 0
    assert (rrgi.inversion.lam, rrgi.inversion.lr_schedule) == (0.12, "cosine")
    assert 0 < rrgi.inversion.finetune_iterations < rrgi.inversion.iterations == 30
    assert rrgi.inversion.lr_generator > 1e-5 and rrgi.inversion.finetune_params == (
        "norm_affine",
        "to_image",
    )
    assert anogan.inversion.objective == "l2" and not anogan.inversion.uses_mask
    assert anogan.inversion.iterations == 30
    assert rgi.inversion.lr_latent == 0.1
    whole = {"tile_size": None, "visualizer": False}
    assert (
        Rgi(**nested(**whole)).inversion.iterations
        == AnoGan(**nested(**whole)).inversion.iterations
        == 50
    )
    assert RRgi(**nested(**whole)).inversion.finetune_params == ()

    import yaml

    configs = Path(__file__).parents[5] / "configs" / "model"
    classes = {"Rgi": Rgi, "RRgi": RRgi, "AnoGan": AnoGan}

    def load(name: str):
        spec = yaml.safe_load((configs / name).read_text())["model"]
        cls = classes[spec["class_path"].rsplit(".", 1)[1]]
        args = {**spec["init_args"], "image_size": 32, "visualizer": False}
        return cls(**args).inversion

    paper_rgi, paper_rrgi, paper_anogan = (
        load(f"{name}_paper.yaml") for name in ("rgi", "rrgi", "anogan")
    )
    for cfg in (paper_rgi, paper_rrgi, paper_anogan):
        assert cfg.iterations == 2000 and cfg.lr_latent == 0.1
        assert cfg.lr_schedule == "constant" and cfg.early_stop_patience == 0
    assert (paper_rgi.objective, paper_rgi.lam, paper_rgi.mask_update) == ("rgi", 0.4, "adam")
    assert paper_rgi.lr_mask == 0.1 and paper_rgi.finetune_iterations == 0
    assert (paper_rrgi.lam, paper_rrgi.finetune_iterations, paper_rrgi.lr_generator) == (
        0.12,
        1500,
        1e-5,
    )
    assert paper_rrgi.mask_update == "adam" and paper_rrgi.finetune_params == ()
    assert paper_anogan.objective == "l2"
    # The configs name the preset; the protocol itself is defined once, next to the solver.
    assert (paper_rgi, paper_rrgi, paper_anogan) == tuple(
        InversionConfig.paper(m) for m in ("rgi", "rrgi", "anogan")
    )
    assert RRgi(image_size=32, preset="paper").inversion == paper_rrgi
    with pytest.raises(ValueError, match="preset must be one of fast, paper"):
        Rgi(image_size=32, preset="slow")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": 0.0}, "lam"),
        ({"lam": -0.4}, "lam"),
        ({"iterations": 0}, "iterations"),
        ({"image_size": 100}, "image_size=100 cannot be produced"),
        ({"image_size": 512}, "image_size=512 cannot be produced"),
        ({"max_epochs": 0}, "max_epochs"),
    ],
)
def test_bad_arguments_raise_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rgi(**nested(**kwargs))


@pytest.mark.slow
def test_fit_test_predict_and_checkpoint_round_trip(tiny_datamodule, tmp_path: Path) -> None:
    from anomalib.engine import Engine

    datamodule = tiny_datamodule
    model = Rgi(**nested(**FAST_RGI))
    engine = Engine(default_root_dir=tmp_path, logger=False)
    engine.fit(model, datamodule=datamodule)
    (metrics,) = engine.test(model, datamodule=datamodule)
    assert {"pixel_AUROC", "pixel_F1Score", "image_AUROC"} <= set(metrics)
    assert metrics["pixel_AUROC"] > 0.9  # the tiny dataset's defects are bright red discs

    # Thresholds were fitted in validation (not NaN), so pred_mask is meaningful.
    assert torch.isfinite(model.post_processor.pixel_threshold)

    predictions = engine.predict(model, datamodule=datamodule)
    batch = predictions[0]
    assert batch.anomaly_map.shape[-2:] == (32, 32)
    assert batch.pred_mask is not None
    assert batch.restored_image.shape == batch.image.shape
    assert batch.restored_image.min() >= 0 and batch.restored_image.max() <= 1

    checkpoint = engine.trainer.checkpoint_callback.best_model_path or str(tmp_path / "m.ckpt")
    engine.trainer.save_checkpoint(checkpoint)
    images = next(iter(datamodule.test_dataloader())).image
    images = model.pre_processor.transform(images)
    reloaded = Rgi.load_from_checkpoint(checkpoint, visualizer=False).eval()
    before, after = model.model.eval()(images), reloaded.model(images)
    assert torch.equal(before.anomaly_map, after.anomaly_map)
    assert (
        reloaded.inversion_settings.lam == 0.4 and reloaded.inversion.mask_update == "closed_form"
    )

    # A checkpoint only fits a model with the same architecture.
    with pytest.raises(ValueError, match="image_size=32 in the checkpoint but 64 here"):
        Engine(default_root_dir=tmp_path, logger=False).test(
            Rgi(image_size=64, visualizer=False), datamodule=datamodule, ckpt_path=checkpoint
        )


@pytest.mark.slow
def test_compiled_generator_gives_the_same_maps_and_state_dict() -> None:
    from rgi_anomalib.models.gan_inversion.solver import InversionConfig
    from rgi_anomalib.models.gan_inversion.torch_model import GanInversionModel

    inversion = InversionConfig(iterations=4, finetune_iterations=2, init_candidates=8)
    arch = {"image_size": 32, "latent_dim": 16, "base_width": 8, "max_width": 32}
    torch.manual_seed(0)
    plain = GanInversionModel(inversion=inversion, **arch).eval()
    compiled = GanInversionModel(inversion=inversion, compile_generator=True, **arch).eval()
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    compiled.load_state_dict(plain.state_dict())
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    expected, got = plain(images), compiled(images)  # R-RGI: fine-tunes in the last 2 steps
    assert torch.allclose(expected.anomaly_map, got.anomaly_map, atol=1e-4)


def test_nested_settings_take_dataclasses_or_dicts_and_keep_the_old_defaults() -> None:
    from rgi_anomalib.models.gan_inversion import GanArchitecture, GanTraining, InversionSettings

    typed = RRgi(
        image_size=32,
        architecture=GanArchitecture(tile_size=None, backbone="dcgan"),
        training=GanTraining(max_epochs=3),
        inversion=InversionSettings(lam=0.2, finetune_params=["to_image"]),
        visualizer=False,
    )
    mapped = RRgi(
        image_size=32,
        architecture={"tile_size": None, "backbone": "dcgan"},
        training={"max_epochs": 3},
        inversion={"lam": 0.2, "finetune_params": ["to_image"]},
        visualizer=False,
    )
    assert typed.inversion == mapped.inversion
    assert (typed.inversion.lam, typed.inversion.finetune_params) == (0.2, ("to_image",))
    assert typed.trainer_arguments["max_epochs"] == 3
    # what the checkpoint keeps: plain values, every solver setting resolved
    assert typed.hparams["inversion"]["iterations"] == 50
    assert typed.hparams["architecture"]["backbone"] == "dcgan"
    with pytest.raises(ValueError, match="GanTraining has no setting 'max_epoch'"):
        Rgi(image_size=32, training={"max_epoch": 3})


def test_a_checkpoint_with_the_old_flat_hyper_parameters_loads_in_the_nested_form(
    tmp_path: Path,
) -> None:
    from rgi_anomalib.models.gan_inversion.lightning_model import CHECKPOINT_CLASS_KEY

    torch.manual_seed(0)
    new = RRgi(image_size=32, visualizer=False)  # the settings old_flat_hparams() writes out
    path = tmp_path / "old.ckpt"
    torch.save(
        {
            "state_dict": new.state_dict(),
            "hyper_parameters": old_flat_hparams(),
            "pytorch-lightning_version": "2.5.0",
            CHECKPOINT_CLASS_KEY: "RRgi",
        },
        path,
    )
    loaded = RRgi.load_from_checkpoint(path, weights_only=True, visualizer=False)
    assert loaded.inversion == new.inversion
    assert (loaded.architecture, loaded.gan_training) == (new.architecture, new.gan_training)
    torch.testing.assert_close(loaded.model.state_dict(), new.model.state_dict())
    # settings given at loading: flat (old names) or by group, merged into the checkpoint's
    changed = RRgi.load_from_checkpoint(
        path, weights_only=True, visualizer=False, lr_finetune=1e-3, training={"max_epochs": 3}
    )
    assert changed.inversion.lr_generator == 1e-3 and changed.inversion.iterations == 30
    assert changed.gan_training.max_epochs == 3 and changed.gan_training.encoder_weight == 10.0
    # Engine(ckpt_path=...) restores into a model built first: a misfit names the nested option
    checkpoint = torch.load(path, weights_only=True)
    with pytest.raises(ValueError, match=r"--model\.architecture\.latent_dim 64"):
        RRgi(image_size=32, architecture={"latent_dim": 32}).on_load_checkpoint(checkpoint)


def test_the_gap_report_and_the_sample_grid_are_callbacks_of_the_model() -> None:
    from rgi_anomalib.models.gan_inversion.gap_report import ReconstructionReport
    from rgi_anomalib.models.gan_inversion.sample_grid import GanSampleGrid

    model = Rgi(image_size=32, training={"sample_every_n_epochs": 5}, visualizer=False)
    callbacks = model.configure_callbacks()
    (grid,) = [c for c in callbacks if isinstance(c, GanSampleGrid)]
    assert grid.every_n_epochs == 5 and grid.latents.shape == (16, 64)
    assert sum(isinstance(c, ReconstructionReport) for c in callbacks) == 1
    assert model.post_processor in callbacks  # anomalib's components stay


def test_inversion_settings_name_every_solver_setting_and_the_readme_every_flat_name() -> None:
    """InversionSettings overrides every InversionConfig field but the two the model fixes; the
    README's table of the old flat names lists each one flat_args translates."""
    import dataclasses

    from rgi_anomalib.models.gan_inversion import InversionSettings
    from rgi_anomalib.models.gan_inversion.flat_args import FLAT_TO_NESTED
    from rgi_anomalib.models.gan_inversion.settings import NOT_SOLVER_FIELDS

    solver = {f.name for f in dataclasses.fields(InversionConfig)} - {"objective", "seed"}
    settings = {f.name for f in dataclasses.fields(InversionSettings)} - set(NOT_SOLVER_FIELDS)
    assert settings == solver
    readme = (Path(__file__).parents[5] / "rgi_anomalib/models/gan_inversion/README.md").read_text()
    table = readme.split("## Flat arguments")[1].split("## Results")[0]
    assert all(f"`{old}`" in table for old in FLAT_TO_NESTED)
