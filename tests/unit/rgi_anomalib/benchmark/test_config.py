"""Benchmark config validation and command-line errors (no training)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from rgi_anomalib.benchmark.cli import main
from rgi_anomalib.benchmark.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[4]


def _base(tmp_path: Path) -> dict:
    return {
        "run_dir": str(tmp_path / "run"),
        "image_size": 32,
        "datasets": [{"name": "d", "build": {"size": 32, "n_train": 8, "n_test_per_category": 2}}],
        "models": [{"name": "rgi", "init_args": {"training": {"max_epochs": 1}}}],
    }


def test_valid_config(tmp_path: Path) -> None:
    cfg = parse_config(_base(tmp_path))
    assert cfg.models[0].class_path == "rgi"
    assert cfg.categories is None  # discovered per dataset
    assert cfg.dataset_root(cfg.datasets[0]) == tmp_path / "run" / "datasets" / "d"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(epochs=3), "unknown key 'epochs' in the benchmark config; allowed"),
        (lambda c: c["models"][0].update(args={}), "unknown key 'args' in models[0]"),
        (lambda c: c["datasets"][0].update(path="x"), "unknown key 'path' in datasets[0]"),
        (lambda c: c["datasets"][0]["build"].update(sz=3), "unknown key 'sz' in datasets[0].build"),
        (lambda c: c.update(categories=["good"]), "lists 'good'"),
        (lambda c: c.update(categories="crack"), "must be a non-empty list of folder names"),
        (lambda c: c["models"][0].update(input_size=4), "models[0].input_size must be"),
        (lambda c: c.pop("models"), "missing required key 'models'"),
        (lambda c: c["datasets"][0].pop("build"), "needs 'root', 'build' or 'datamodule'"),
        (lambda c: c["models"].append({"name": "rgi"}), "model names must be unique"),
        (lambda c: c["models"][0].update(fit_from="rgi"), "fit_from 'rgi' must name an earlier"),
    ],
)
def test_config_errors(tmp_path: Path, edit, message: str) -> None:
    data = _base(tmp_path)
    edit(data)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data)


def test_allowed_keys_are_listed(tmp_path: Path) -> None:
    data = _base(tmp_path)
    data["model"] = []
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert "models" in str(info.value) and "run_dir" in str(info.value)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _base(tmp_path)
    data["models"] = [{"name": "nosuchmodel"}]
    assert main(["--config", str(_write(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuchmodel'" in err and "patchcore" in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_cli_unknown_init_arg(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _base(tmp_path)
    data["models"][0]["init_args"] = {"lamda": 0.1}
    assert main(["--config", str(_write(tmp_path, data))]) == 2
    assert "unknown init_arg 'lamda'" in capsys.readouterr().err


def test_cli_existing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _base(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    assert main(["--config", str(_write(tmp_path, data))]) == 2
    assert "already exists; pass --resume to go on with it, --overwrite" in capsys.readouterr().err
    # --overwrite and --resume still refuse a directory this tool did not write
    for flag in ("--overwrite", "--resume"):
        assert main(["--config", str(_write(tmp_path, data)), flag]) == 2
        assert "not written by rgi-anomalib benchmark" in capsys.readouterr().err
    assert main(["--config", str(_write(tmp_path, data)), "--overwrite", "--resume"]) == 2
    assert "contradict each other" in capsys.readouterr().err
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_cli_missing_config(capsys: pytest.CaptureFixture) -> None:
    assert main(["--config", "/nonexistent/x.yaml"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_empty_category_and_missing_masks(tmp_path: Path, folder_dataset_factory) -> None:
    make_folder_dataset = folder_dataset_factory
    from rgi_anomalib.benchmark.config import parse_config as parse
    from rgi_anomalib.benchmark.data import prepare_dataset

    root = make_folder_dataset(tmp_path / "data", n_train=6, n_test=2, n_good=1)
    (root / "test" / "crack").mkdir()
    data = _base(tmp_path)
    data["datasets"] = [{"name": "f", "root": str(root)}]
    data["calibration_images"] = 2
    data["categories"] = ["crack"]
    with pytest.raises(ConfigError, match="category 'crack' has no images in"):
        prepare_dataset(parse(data).datasets[0], parse(data), print)
    # a category without masks: pixel metrics impossible, noted
    (root / "test" / "crack" / "000.png").write_bytes((root / "test/defect/000.png").read_bytes())
    info = prepare_dataset(parse(data).datasets[0], parse(data), print)
    assert info.masks["crack"] is None
    assert any("pixel metrics are impossible" in n for n in info.notes)
    assert len(info.train) == 4 and len(info.calibration) == 2


@pytest.mark.parametrize(
    "name",
    [
        "quick",
        "paper",
        "ci",
        "real_hazelnut",
        "real_hazelnut_lambda",
        "baselines",
        "kolektorsdd",
        "mvtec_real",
    ],
)
def test_shipped_configs_parse(name: str) -> None:
    from rgi_anomalib.benchmark.config import load_config
    from rgi_anomalib.benchmark.models import check_model_spec

    cfg = load_config(REPO / "configs" / "benchmark" / f"{name}.yaml")
    for spec in cfg.models:
        check_model_spec(spec)


@pytest.mark.parametrize(
    "path", ["model/rgi.yaml", "model/rrgi.yaml", "model/anogan.yaml", "data/synthetic_btad.yaml"]
)
def test_anomalib_style_configs(path: str) -> None:
    """configs/model|data files: class_path importable, every init_arg accepted."""
    import importlib
    import inspect

    data = yaml.safe_load((REPO / "configs" / path).read_text())
    (section,) = data.values()
    module, _, name = section["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    params = inspect.signature(cls.__init__).parameters
    assert set(section["init_args"]) <= set(params)


def test_cli_unknown_dataset_root(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _base(tmp_path)
    data["datasets"] = [{"name": "real", "root": str(tmp_path / "nowhere")}]
    assert main(["--config", str(_write(tmp_path, data))]) == 2
    assert "dataset 'real': root" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_texture_folder_is_a_note_and_perlin(tmp_path: Path) -> None:
    from rgi_anomalib.benchmark.models import check_model_spec, model_form

    cfg = _base(tmp_path)
    cfg["models"].append({"name": "draem", "init_args": {"dtd_dir": "no/such"}})
    cfg["models"].append(
        {"name": "draem_dtd", "class_path": "draem", "init_args": {"dtd_dir": "t"}}
    )
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "a" / "x.jpg").write_bytes(b"")
    parsed = parse_config(cfg, base_dir=tmp_path)
    missing, present = parsed.models[1], parsed.models[2]
    assert missing.init_args["dtd_dir"] is None and "no/such is not a directory" in missing.notes[0]
    assert model_form(check_model_spec(missing), missing) == "Perlin anomalies (no DTD)"
    assert model_form(check_model_spec(present), present) == "DTD textures, 1 images"


def test_categories_are_discovered_and_named_as_on_disk(
    tmp_path: Path, folder_dataset_factory
) -> None:
    from rgi_anomalib.benchmark.data import discover_categories, prepare_dataset

    root = folder_dataset_factory(tmp_path / "data", n_train=6, n_test=2, n_good=1)
    for name in ("Scratch on edge", "bent_lead"):  # any folder name is a category
        (root / "test" / name).mkdir()
        (root / "test" / name / "a.png").write_bytes((root / "test/defect/000.png").read_bytes())
    assert discover_categories(root) == ["Scratch on edge", "bent_lead", "defect"]
    data = _base(tmp_path)
    data["datasets"] = [{"name": "f", "root": str(root)}]
    data["calibration_images"] = 2
    cfg = parse_config(data)
    info = prepare_dataset(cfg.datasets[0], cfg, print)
    assert list(info.categories) == ["Scratch on edge", "bent_lead", "defect"]
    assert info.masks["defect"] is not None and info.masks["bent_lead"] is None
    # a dataset entry may list its own categories
    data["datasets"][0]["categories"] = ["defect"]
    cfg = parse_config(data)
    assert list(prepare_dataset(cfg.datasets[0], cfg, print).categories) == ["defect"]
    from rgi_anomalib.benchmark.data import check_per_category

    models = [dataclasses.replace(cfg.models[0], init_args_per_category={"dent": {"lam": 0.1}})]
    with pytest.raises(ConfigError, match="names 'dent', which no dataset has"):
        check_per_category(models, [prepare_dataset(cfg.datasets[0], cfg, print)])
    empty = tmp_path / "empty"
    (empty / "test" / "good").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no defect category folders"):
        discover_categories(empty)


def test_cli_datasets_selects_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rgi_anomalib.benchmark.overrides import select_datasets

    data = _base(tmp_path)
    data["datasets"].append({**data["datasets"][0], "name": "e"})
    cfg = parse_config(data, base_dir=tmp_path)
    assert [d.name for d in select_datasets(cfg.datasets, ["e"])] == ["e"]
    assert main(["--config", str(_write(tmp_path, data)), "--datasets", "d", "x"]) == 2
    assert "--datasets x: not in the config (it has ['d', 'e'])" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_models_selects_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rgi_anomalib.benchmark.overrides import select_models

    data = _base(tmp_path)
    data["models"] += [
        {"name": "rrgi", "fit_from": "rgi", "init_args": {"training": {"max_epochs": 1}}},
        {"name": "anogan", "init_args": {"training": {"max_epochs": 1}}},
    ]
    cfg = parse_config(data, base_dir=tmp_path)
    assert [m.name for m in select_models(cfg.models, ["anogan", "rgi", "rrgi"])] == [
        "rgi",
        "rrgi",
        "anogan",
    ]
    with pytest.raises(ConfigError, match="'rrgi' loads the weights of 'rgi'"):
        select_models(cfg.models, ["rrgi"])
    assert main(["--config", str(_write(tmp_path, data)), "--models", "rgi", "x"]) == 2
    assert "--models x: not in the config" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- types and ranges of every key, at parse time (issue 32) ---------------------------------


def _set(path: str, value: object):
    """An edit that sets the key at ``path`` ("models.0.trainer_args.max_epochs")."""

    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[last] = value

    return edit


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("eval_batch_size", "eight", "eval_batch_size must be an integer >= 1, got 'eight'"),
        ("train_batch_size", 0, "train_batch_size must be an integer >= 1, got 0"),
        ("train_batch_size", 8.0, "train_batch_size must be an integer >= 1, got 8.0"),
        ("calibration_images", -1, "calibration_images must be an integer >= 0, got -1"),
        ("qualitative_images", "2", "qualitative_images must be an integer >= 0, got '2'"),
        ("image_size", True, "image_size must be an integer >= 8, got True"),
        ("image_size", "64", "image_size must be an integer >= 8, got '64'"),
        ("keep_checkpoints", "yes please", "keep_checkpoints must be true or false"),
        ("description", ["a"], "description must be a string, got ['a']"),
        ("label_free_percentile", "high", "label_free_percentile must be a number in (0, 100]"),
        ("label_free_percentile", 0, "label_free_percentile must be a number in (0, 100]"),
        ("seeds", [0, "1"], "seeds[1] must be an integer in [0, 4294967295], got '1'"),
        ("seeds", [-1], "seeds[0] must be an integer in [0, 4294967295], got -1"),
        ("seeds", [3, 3], "seeds must be distinct, got [3, 3]"),
        ("run_dir", 5, "run_dir must be a non-empty string, got 5"),
        (
            "models.0.trainer_args.max_epochs",
            "one",
            "models[0].trainer_args.max_epochs must be an integer >= 1, got 'one'",
        ),
        ("models.0.trainer_args.max_epochs", 0, "models[0].trainer_args.max_epochs must be"),
        ("models.0.trainer_args.limit_train_batches", 1.5, "limit_train_batches must be an int"),
        ("models.0.trainer_args.devices", 2, "trainer_args.devices: set by the bench"),
        ("models.0.trainer_args.accelerator", "tpu", "accelerator must be one of cpu, gpu, cuda"),
        ("models.0.trainer_args", [1], "models[0].trainer_args must be a mapping"),
        ("models.0.mask_map", "no", "models[0].mask_map must be true or false, got 'no'"),
        ("models.0.name", 3, "models[0].name must be a non-empty string, got 3"),
        ("models.0.fit_from", 1, "models[0].fit_from must be a non-empty string, got 1"),
        ("models.0.input_size", "32", "models[0].input_size must be an integer >= 8"),
        ("datasets.0.name", None, "datasets[0].name must be a non-empty string, got None"),
        ("datasets.0.build.n_train", "ten", "datasets[0].build.n_train must be an integer or null"),
        ("datasets.0.build.n_train", 0, "datasets[0].build.n_train must be an integer >= 1"),
        ("datasets.0.build.size", 48.5, "datasets[0].build.size must be an integer, got 48.5"),
        ("datasets.0.build.fill", "loud", "datasets[0].build: fill must be one of"),
        ("datasets.0.build.include_test_good", "no", "include_test_good must be true or false"),
        ("datasets.0.build.categories", "crack", "datasets[0].build.categories must be a list"),
        ("datasets.0.rename_categories", {"a": 1}, "rename_categories must map folder -> name"),
    ],
)
def test_wrong_types_and_ranges(tmp_path: Path, path: str, value: object, message: str) -> None:
    data = _base(tmp_path)
    _set(path, value)(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_right_types_pass(tmp_path: Path) -> None:
    data = _base(tmp_path)
    data.update(
        seeds=[0, 4294967295],
        calibration_images=0,
        label_free_percentile=99,
        keep_checkpoints=True,
        description=None,
    )
    data["models"][0]["trainer_args"] = {"max_epochs": 2, "limit_train_batches": 0.5}
    data["datasets"][0]["build"].update(n_train=None, categories=["crack"], fill="random")
    cfg = parse_config(data)
    assert cfg.seeds == [0, 4294967295] and cfg.label_free_percentile == 99.0


def _cli_error(tmp_path: Path, data: dict, capsys: pytest.CaptureFixture, *extra: str) -> str:
    assert main(["--config", str(_write(tmp_path, data)), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rgi-anomalib benchmark: error: ")
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written
    return err


def test_cli_issue_examples(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The issue's three examples: one line each, exit 2, before any run directory."""
    data = _base(tmp_path)
    data["eval_batch_size"] = "eight"
    assert "eval_batch_size must be an integer >= 1, got 'eight'" in _cli_error(
        tmp_path, data, capsys
    )
    data = _base(tmp_path)
    data["models"][0]["trainer_args"] = {"max_epochs": "one"}
    err = _cli_error(tmp_path, data, capsys)
    assert "models[0].trainer_args.max_epochs must be an integer >= 1, got 'one'" in err
    data = _base(tmp_path)
    data["models"][0]["init_args"] = {"training": {"max_epochs": "one"}}  # RGI's own
    err = _cli_error(tmp_path, data, capsys)
    assert "model 'rgi': init_args.training.max_epochs must be an integer, got 'one'" in err
    data = _base(tmp_path)
    data["image_size"] = 48
    err = _cli_error(tmp_path, data, capsys)
    assert "model 'rgi' cannot be built with these settings" in err
    assert "the config's image_size 48" in err and "power of two in [32, 256]" in err
    data = _base(tmp_path)  # the --seeds flag is checked as the key is
    assert "--seeds[0] must be an integer in [0, 4294967295]" in _cli_error(
        tmp_path, data, capsys, "--seeds", "-1"
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"name": "rgi", "init_args": {"architecture": {"backbone": "stylegan"}}},
            "init_args.architecture.backbone must be one of 'dcgan', 'progan', 'fastgan', "
            "got 'stylegan'",
        ),
        (
            {"name": "rgi", "init_args": {"training": {"lr_gan": "fast"}}},
            "init_args.training.lr_gan must be a number, got 'fast'",
        ),
        (
            {"name": "rgi", "init_args": {"lr_gan": 1e-3}},
            "unknown init_arg 'lr_gan' for Rgi; it is now training.lr_gan (the nested form)",
        ),
        (
            {"name": "rgi", "init_args": {"training": {"lr": 1e-3}}},
            "unknown init_arg 'training.lr' for Rgi; allowed: crops_per_image,",
        ),
        (
            {"name": "rgi", "init_args": {"training": 2}},
            "init_args.training must be a mapping of GanTraining settings, got 2",
        ),
        (
            {"name": "rgi", "init_args_per_category": {"crack": {"iterations": "many"}}},
            "init_args_per_category.crack.iterations must be an integer or null, got 'many'",
        ),
        (
            {"name": "rgi", "init_args": {"training": {"max_epochs": 0}}},
            "model 'rgi' cannot be built with these settings",
        ),
        (
            {"name": "rgi", "input_size": 96},
            "image_size from its input_size 96",
        ),
        (
            {
                "name": "rgi",
                "init_args": {"inversion": {"lam": "auto"}, "training": {"max_epochs": 1}},
            },
            "calibration_images must be >= 1",
        ),
        (
            {"name": "patchcore", "trainer_args": {"gradient_clip_val": "big"}},
            "model 'patchcore': trainer_args.gradient_clip_val must be",
        ),
        (
            {"name": "patchcore", "trainer_args": {"max_epoch": 1}},
            "unknown trainer_arg 'max_epoch'",
        ),
    ],
)
def test_model_arguments_against_the_class(model: dict, message: str, tmp_path: Path) -> None:
    from rgi_anomalib.benchmark.models import check_model_spec

    data = _base(tmp_path)
    data["models"] = [model]
    data["calibration_images"] = 0
    cfg = parse_config(data)
    with pytest.raises(ConfigError) as info:
        check_model_spec(cfg.models[0], cfg)
    assert message in str(info.value)


def test_image_size_of_another_model_is_its_own(tmp_path: Path) -> None:
    """The harness's image_size applies to every model; only a model that cannot take it
    refuses it (PatchCore takes 48 px, RGI with a 64 px input_size too)."""
    from rgi_anomalib.benchmark.models import check_model_spec

    data = _base(tmp_path)
    data["image_size"] = 48
    data["models"] = [{"name": "patchcore"}, {"name": "rgi", "input_size": 64}]
    cfg = parse_config(data)
    for spec in cfg.models:
        check_model_spec(spec, cfg)


def test_overrides_apply_to_a_copy_of_the_frozen_config(tmp_path: Path) -> None:
    from rgi_anomalib.benchmark.overrides import Overrides

    data = _base(tmp_path)
    data["models"] += [{"name": "anogan", "fit_from": "rgi"}, {"name": "rasl"}]
    cfg = parse_config(data, base_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run_dir = tmp_path / "elsewhere"  # type: ignore[misc]
    chosen, resume = Overrides(
        run_dir=tmp_path / "other", seeds=[3, 4], models=["rgi"], keep_checkpoints=True, resume=True
    ).apply(cfg)
    assert (chosen.run_dir, chosen.seeds, chosen.keep_checkpoints) == (
        tmp_path / "other",
        [3, 4],
        True,
    )
    assert [m.name for m in chosen.models] == ["rgi"]
    # rgi's weights are still saved for the anogan that --models left out (a later --resume)
    assert resume.enabled and resume.fit_sources == {"rgi"}
    assert cfg.run_dir == tmp_path / "run" and len(cfg.models) == 3  # the config is untouched
    assert Overrides().apply(cfg) == (cfg, type(resume)(False, frozenset({"rgi"})))
    with pytest.raises(ConfigError, match=r"--seeds\[0\] must be an integer"):
        Overrides(seeds=[-1]).apply(cfg)
