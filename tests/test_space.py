"""The search-space adapter: TOML files to Keras Tuner hyperparameters, and their validation."""

from pathlib import Path

import keras_tuner
import pytest

from tuner.errors import SpaceError
from tuner.space import SCHEMA, available_spaces, load_space, parse_space


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_spaces_all_load() -> None:
    assert available_spaces() == ["baseline", "default", "quick"]
    for name in available_spaces():
        space = load_space(name)
        assert space.name == name


def test_baseline_pins_the_study_values() -> None:
    space = load_space("baseline")
    assert space.params == {}
    expected = {
        "data.image_size": 224, "data.batch_size": 32, "data.validation_fraction": 0.25,
        "backbone.weights": "imagenet", "backbone.trainable_from": "all", "head.dense_layers": 0,
        "head.output_activation": "relu", "augmentation.horizontal_flip": True,
        "augmentation.width_shift": 0.2, "augmentation.height_shift": 0.2, "augmentation.rotation": 0.0,
        "augmentation.zoom": 0.0, "augmentation.contrast": 0.0, "training.optimizer": "adam",
        "training.learning_rate": 1e-4, "training.loss": "mae", "training.epochs": 7,
        "search.tuner": "random", "search.max_trials": 1, "search.objective": "val_mae",
    }
    for key, value in expected.items():
        assert space.setting(key) == value, key


def test_every_kind_of_hyperparameter(tmp_path: Path) -> None:
    path = write_space(tmp_path, """
[head]
dense_layers = { type = "choice", values = [0, 1, 2], default = 1 }
units = { type = "int", min = 32, max = 256, step = 32, default = 64 }
dropout = { type = "float", min = 0.0, max = 0.5, step = 0.1 }
[training]
learning_rate = { type = "float", min = 1e-5, max = 1e-2, sampling = "log", default = 1e-3 }
[augmentation]
horizontal_flip = { type = "boolean", default = true }
zoom = { type = "fixed", value = 0.1 }
""")
    space = load_space(path)
    hp = keras_tuner.HyperParameters()
    assert space.value(hp, "head.dense_layers") == 1
    assert space.value(hp, "head.units") == 64
    assert space.value(hp, "head.dropout") == 0.0
    assert space.value(hp, "training.learning_rate") == pytest.approx(1e-3)
    assert space.value(hp, "augmentation.horizontal_flip") is True
    assert space.value(hp, "augmentation.zoom") == 0.1
    kinds = {param.name: type(param).__name__ for param in hp.space}
    assert kinds == {
        "head.dense_layers": "Choice", "head.units": "Int", "head.dropout": "Float",
        "training.learning_rate": "Float", "augmentation.horizontal_flip": "Boolean", "augmentation.zoom": "Fixed",
    }
    learning_rate = next(param for param in hp.space if param.name == "training.learning_rate")
    assert learning_rate.sampling == "log"
    assert (learning_rate.min_value, learning_rate.max_value) == (1e-5, 1e-2)
    # A plain value is no hyperparameter at all: it never reaches the oracle.
    assert space.value(hp, "head.output_activation") == "relu"
    assert "head.output_activation" not in hp.values


def test_trial_values_come_from_hp() -> None:
    space = load_space("quick")
    hp = keras_tuner.HyperParameters()
    hp.values["training.learning_rate"] = 0.002
    assert space.value(hp, "training.learning_rate") == 0.002


@pytest.mark.parametrize(("text", "message"), [
    ("[head]\nunit = 3\n", "unknown key 'head.unit' in {path}. Did you mean 'units'?"),
    ("[haed]\nunits = 3\n", "unknown section [haed] in {path}. Did you mean 'head'?"),
    ("[head]\nlearning_rate = 0.1\n", "unknown key 'head.learning_rate' in {path}. Did you mean 'training.learning_rate'?"),
    ("[head]\ndropout = 1.5\n", "head.dropout in {path}: value 1.5 must be below 1.0."),
    ("[data]\nimage_size = 16\n", "data.image_size in {path}: value 16 must be at least 32."),
    ("[data]\nimage_size = 64.5\n", "data.image_size in {path}: value 64.5 must be an integer."),
    ("[training]\nloss = 'mape'\n", "training.loss in {path}: value 'mape' must be one of 'mae', 'mse', 'huber'."),
    ("[data]\nimage_size = { type = 'choice', values = [32, 64] }\n",
     "data.image_size in {path} cannot be searched; give it a single value."),
    ("[training]\nlearning_rate = { type = 'float', min = 0.01, max = 0.001 }\n",
     "training.learning_rate: min 0.01 must be below max 0.001. ({path})"),
    ("[training]\nlearning_rate = { type = 'float', min = 0.0, max = 0.1, sampling = 'log' }\n",
     "training.learning_rate: min 0.0 must be at least 1e-07. ({path})"),
    ("[training]\nlearning_rate = { type = 'float', min = 1e-5, max = 0.1, sampling = 'log', step = 0.01 }\n",
     "training.learning_rate: 'step' works with linear sampling only. ({path})"),
    ("[head]\nunits = { type = 'choice', values = [] }\n",
     "head.units: a choice needs a non-empty list 'values'. ({path})"),
    ("[head]\nunits = { type = 'choice', values = [64, 0] }\n",
     "head.units: value 0 must be at least 1. ({path})"),
    ("[head]\nunits = { type = 'choice', values = [64, 128], default = 32 }\n",
     "head.units: default 32 is not among the values [64, 128]. ({path})"),
    ("[head]\nunits = { type = 'int', min = 32, max = 64, stp = 8 }\n",
     "head.units: unknown field 'stp' for type 'int'. Did you mean 'step'? ({path})"),
    ("[head]\nunits = { type = 'range', min = 32, max = 64 }\n",
     "head.units: type 'range' is not one of choice, int, float, boolean, fixed. ({path})"),
    ("[head]\nunits = { type = 'boolean' }\n", "head.units: is not a true/false setting, so it cannot be a boolean hyperparameter; "
     "use type 'choice', 'int' or 'float'. ({path})"),
    ("[head]\nunits = { type = 'int', min = 32.5, max = 64 }\n", "head.units: min 32.5 must be an integer. ({path})"),
])
def test_invalid_space_names_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = write_space(tmp_path, text)
    with pytest.raises(SpaceError) as raised:
        load_space(path)
    expected = message.format(path=path)
    assert expected in str(raised.value)


def test_default_outside_range(tmp_path: Path) -> None:
    path = write_space(tmp_path, "[head]\ndense_layers = { type = 'int', min = 0, max = 2, default = 3 }\n")
    with pytest.raises(SpaceError, match=r"head.dense_layers: default 3 is outside \[0, 2\]"):
        load_space(path)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write_space(tmp_path, "[head]\nunits = \n")
    with pytest.raises(SpaceError, match=r"is not valid TOML: .*line 2"):
        load_space(path)


def test_unknown_shipped_space_suggests_nearest() -> None:
    with pytest.raises(SpaceError) as raised:
        load_space("basline")
    assert "search space 'basline' not found. Did you mean 'baseline'?" in str(raised.value)
    assert "Shipped spaces: baseline, default, quick" in str(raised.value)


def test_overrides_are_validated() -> None:
    space = load_space("baseline").with_overrides({"data.image_size": 64, "backbone.weights": "none"})
    assert space.setting("data.image_size") == 64
    assert space.setting("backbone.weights") == "none"
    with pytest.raises(SpaceError, match=r"data.image_size in .*baseline.toml: value 8 must be at least 32"):
        load_space("baseline").with_overrides({"data.image_size": 8})


def test_document_round_trip() -> None:
    space = load_space("default")
    again = parse_space(space.to_document(), name="default")
    assert again.fixed == space.fixed
    assert again.params == space.params


def test_random_tuner_needs_max_trials(tmp_path: Path) -> None:
    path = write_space(tmp_path, "[search]\ntuner = 'random'\n")
    with pytest.raises(SpaceError) as raised:
        load_space(path)
    assert str(raised.value) == (f"search.max_trials in {path} must be set for the random tuner, which has no "
                                 "budget of its own; for example max_trials = 20.")


def test_searchable_setting_is_not_a_setting() -> None:
    with pytest.raises(KeyError, match="searchable"):
        load_space("quick").setting("training.learning_rate")


def test_schema_defaults_pass_their_own_checks() -> None:
    for section, settings in SCHEMA.items():
        for key, setting in settings.items():
            assert setting.check(setting.default) is None, f"{section}.{key}"
