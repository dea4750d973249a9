"""Search spaces as data: a TOML file turned into Keras Tuner `hp.*` calls.

A space file has the sections `search`, `data`, `backbone`, `head`,
`augmentation` and `training`. A plain value fixes a setting. A table with a
`type` key makes a searchable hyperparameter, but only for the keys listed as
searchable below:

    learning_rate = { type = "float", min = 1e-5, max = 1e-3, sampling = "log" }
    units = { type = "int", min = 64, max = 512, step = 64 }
    dense_layers = { type = "choice", values = [0, 1, 2] }
    horizontal_flip = { type = "boolean" }

The whole file is validated before any training: an unknown section or key
names the nearest valid one, and a value out of range names the key and the
value.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import SpaceError

if TYPE_CHECKING:  # Keras Tuner imports TensorFlow, which takes seconds; validation must not wait for it.
    import keras_tuner

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"

# The fine-tuning depths, shallowest first: "none" freezes the whole
# backbone, "conv5" trains its last stage, "all" trains every layer.
TRAINABLE_FROM = ("none", "conv5", "conv4", "conv3", "conv2", "all")

Check = Callable[[Any], str | None]


def _number(low: float | None = None, high: float | None = None, *, integer: bool = False,
            high_inclusive: bool = True) -> Check:
    def check(value: Any) -> str | None:
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            return "must be an integer" if integer else "must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if low is not None and value < low:
            return f"must be at least {low}"
        if high is not None and (value > high if high_inclusive else value >= high):
            return f"must be {'at most' if high_inclusive else 'below'} {high}"
        return None

    return check


def _one_of(*allowed: Any) -> Check:
    def check(value: Any) -> str | None:
        if value in allowed and type(value) is type(allowed[0]):
            return None
        return "must be one of " + ", ".join(repr(item) for item in allowed)

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


@dataclass(frozen=True)
class Setting:
    """One valid key of a space file: its default, its check and whether it can be searched."""

    default: Any
    check: Check
    searchable: bool = False
    help: str = ""


SCHEMA: dict[str, dict[str, Setting]] = {
    "search": {
        "tuner": Setting("hyperband", _one_of("hyperband", "random", "bayesian"),
                         help="the oracle that proposes trials"),
        "objective": Setting("val_mae", _one_of("val_mae", "val_loss", "val_mape"),
                             help="the validation metric to minimise"),
        "max_epochs": Setting(7, _number(1, 1000, integer=True),
                              help="Hyperband: the maximum number of epochs one model trains"),
        "factor": Setting(3, _number(2, 10, integer=True),
                          help="Hyperband: the reduction factor between rounds"),
        "hyperband_iterations": Setting(1, _number(1, 100, integer=True)),
        "max_trials": Setting(0, _number(0, 100_000, integer=True),
                              help="the maximum number of trials; 0 lets Hyperband finish its brackets"),
        "seed": Setting(0, _number(0, 2**31 - 1, integer=True)),
        "early_stopping_patience": Setting(0, _number(0, 1000, integer=True),
                                           help="epochs without improvement before a trial stops; 0 turns it off"),
        "max_consecutive_failed_trials": Setting(3, _number(1, 1000, integer=True)),
        "max_retries_per_trial": Setting(0, _number(0, 10, integer=True)),
    },
    "data": {
        "image_size": Setting(224, _number(32, 1024, integer=True), help="square input size in pixels"),
        "batch_size": Setting(32, _number(1, 4096, integer=True)),
        "validation_fraction": Setting(0.25, _number(0.01, 0.9)),
        "cache": Setting("memory", _one_of("memory", "disk", "none"),
                         help="where decoded images are kept between epochs"),
    },
    "backbone": {
        "weights": Setting("imagenet", _text, help='"imagenet", "none" or a path to a weights file'),
        "trainable_from": Setting("all", _one_of(*TRAINABLE_FROM), searchable=True,
                                  help="the first ResNet50 stage that trains"),
        "train_batchnorm": Setting(True, _boolean, searchable=True,
                                   help="whether BatchNorm layers of the trainable stages update"),
    },
    "head": {
        "dense_layers": Setting(0, _number(0, 4, integer=True), searchable=True),
        "units": Setting(256, _number(1, 8192, integer=True), searchable=True),
        "dropout": Setting(0.0, _number(0.0, 1.0, high_inclusive=False), searchable=True),
        "activation": Setting("relu", _one_of("relu", "gelu", "swish", "elu"), searchable=True),
        "output_activation": Setting("relu", _one_of("relu", "linear", "softplus"), searchable=True),
    },
    "augmentation": {
        "horizontal_flip": Setting(True, _boolean, searchable=True),
        "width_shift": Setting(0.2, _number(0.0, 1.0, high_inclusive=False), searchable=True),
        "height_shift": Setting(0.2, _number(0.0, 1.0, high_inclusive=False), searchable=True),
        "rotation": Setting(0.0, _number(0.0, 0.5), searchable=True, help="fraction of a full turn"),
        "zoom": Setting(0.0, _number(0.0, 0.9), searchable=True),
        "contrast": Setting(0.0, _number(0.0, 1.0), searchable=True),
    },
    "training": {
        "optimizer": Setting("adam", _one_of("adam", "adamw", "sgd"), searchable=True),
        "learning_rate": Setting(1e-4, _number(1e-7, 1.0), searchable=True),
        "loss": Setting("mae", _one_of("mae", "mse", "huber"), searchable=True),
        "epochs": Setting(7, _number(1, 1000, integer=True),
                          help="epochs per trial for the random and bayesian tuners"),
    },
}

# Names of the hyperparameter kinds a table may ask for, with the keys each kind accepts.
PARAM_KEYS = {
    "choice": {"type", "values", "default"},
    "int": {"type", "min", "max", "step", "sampling", "default"},
    "float": {"type", "min", "max", "step", "sampling", "default"},
    "boolean": {"type", "default"},
    "fixed": {"type", "value"},
}


def _nearest(name: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return f" Did you mean '{matches[0]}'?" if matches else ""


@dataclass(frozen=True)
class Param:
    """A searchable hyperparameter as declared in a space file."""

    name: str
    kind: str
    spec: dict[str, Any]

    def declare(self, hp: keras_tuner.HyperParameters) -> Any:
        """Register this hyperparameter with `hp` and return its value for the current trial."""
        spec = self.spec
        if self.kind == "choice":
            return hp.Choice(self.name, spec["values"], default=spec.get("default"))
        if self.kind == "int":
            return hp.Int(self.name, spec["min"], spec["max"], step=spec.get("step"),
                          sampling=spec.get("sampling", "linear"), default=spec.get("default"))
        if self.kind == "float":
            return hp.Float(self.name, spec["min"], spec["max"], step=spec.get("step"),
                            sampling=spec.get("sampling", "linear"), default=spec.get("default"))
        if self.kind == "boolean":
            return hp.Boolean(self.name, default=spec.get("default", False))
        return hp.Fixed(self.name, spec["value"])


@dataclass
class SearchSpace:
    """A validated search space: fixed settings and searchable hyperparameters, by `section.key`."""

    name: str
    source: Path | None
    fixed: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)

    def setting(self, key: str) -> Any:
        """Return a fixed setting such as `data.image_size`; raise KeyError for a searchable one."""
        if key in self.params:
            raise KeyError(f"{key} is searchable, so its value comes from the trial's hyperparameters")
        return self.fixed[key]

    def value(self, hp: keras_tuner.HyperParameters, key: str) -> Any:
        """Return the trial's value of `key`, declaring it with `hp` when it is searchable."""
        if key in self.params:
            return self.params[key].declare(hp)
        return self.fixed[key]

    def with_overrides(self, overrides: dict[str, Any]) -> SearchSpace:
        """Return a copy with some keys fixed to new values, each validated like the file's."""
        document = self.to_document()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            document.setdefault(section, {})[name] = value
        return parse_space(document, name=self.name, source=self.source)

    def to_document(self) -> dict[str, dict[str, Any]]:
        """Return the resolved space as nested tables, ready for JSON or TOML."""
        document: dict[str, dict[str, Any]] = {}
        for key, value in self.fixed.items():
            section, name = key.split(".", 1)
            document.setdefault(section, {})[name] = value
        for key, param in self.params.items():
            section, name = key.split(".", 1)
            document.setdefault(section, {})[name] = {"type": param.kind, **param.spec}
        return document


def _parse_param(key: str, table: dict[str, Any], setting: Setting) -> Param:
    kind = table.get("type")
    if kind not in PARAM_KEYS:
        raise SpaceError(f"{key}: type {kind!r} is not one of " + ", ".join(PARAM_KEYS) + ".")
    unknown = sorted(set(table) - PARAM_KEYS[kind])
    if unknown:
        raise SpaceError(f"{key}: unknown field '{unknown[0]}' for type '{kind}'."
                         + _nearest(unknown[0], sorted(PARAM_KEYS[kind])))
    spec = {name: value for name, value in table.items() if name != "type"}

    def check_value(value: Any, where: str) -> None:
        problem = setting.check(value)
        if problem:
            raise SpaceError(f"{key}: {where} {value!r} {problem}.")

    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{key}: a choice needs a non-empty list 'values'.")
        for value in values:
            check_value(value, "value")
        if "default" in spec and spec["default"] not in values:
            raise SpaceError(f"{key}: default {spec['default']!r} is not among the values {values}.")
    elif kind in ("int", "float"):
        for bound in ("min", "max"):
            if bound not in spec:
                raise SpaceError(f"{key}: a {kind} range needs '{bound}'.")
            check_value(spec[bound], bound)
        if kind == "int" and not all(isinstance(spec[b], int) for b in ("min", "max")):
            raise SpaceError(f"{key}: an int range needs integer 'min' and 'max'.")
        if spec["min"] >= spec["max"]:
            raise SpaceError(f"{key}: min {spec['min']!r} must be below max {spec['max']!r}.")
        sampling = spec.get("sampling", "linear")
        if sampling not in ("linear", "log", "reverse_log"):
            raise SpaceError(f"{key}: sampling {sampling!r} must be 'linear', 'log' or 'reverse_log'.")
        if sampling != "linear" and spec["min"] <= 0:
            raise SpaceError(f"{key}: {sampling} sampling needs min above 0, got {spec['min']!r}.")
        if "step" in spec and spec["step"] is not None and sampling != "linear":
            raise SpaceError(f"{key}: 'step' works with linear sampling only.")
        if "default" in spec:
            check_value(spec["default"], "default")
            if not spec["min"] <= spec["default"] <= spec["max"]:
                raise SpaceError(f"{key}: default {spec['default']!r} is outside [{spec['min']}, {spec['max']}].")
    elif kind == "boolean":
        if setting.check(True) is not None:
            raise SpaceError(f"{key}: is not a true/false setting, so it cannot be a boolean hyperparameter; "
                             "use type 'choice', 'int' or 'float'.")
        if "default" in spec and not isinstance(spec["default"], bool):
            raise SpaceError(f"{key}: default must be true or false.")
    else:
        if "value" not in spec:
            raise SpaceError(f"{key}: a fixed hyperparameter needs 'value'.")
        check_value(spec["value"], "value")
    return Param(key, kind, spec)


def setting_problem(key: str, value: Any) -> str | None:
    """Return what is wrong with `value` for the fixed setting `key` ("must be one of ..."), or None."""
    section, _, name = key.partition(".")
    return SCHEMA[section][name].check(value)


def parse_space(document: dict[str, Any], name: str = "space", source: Path | None = None) -> SearchSpace:
    """Validate a parsed space document and return the `SearchSpace`; raise SpaceError on the first problem."""
    where = f" in {source}" if source else ""
    space = SearchSpace(name=name, source=source)
    for section, table in document.items():
        if section == "meta":
            continue
        if section not in SCHEMA:
            raise SpaceError(f"unknown section [{section}]{where}." + _nearest(section, list(SCHEMA))
                             + " Valid sections: " + ", ".join(SCHEMA) + ".")
        if not isinstance(table, dict):
            raise SpaceError(f"'{section}'{where} must be a table such as [{section}].")
        for key in table:
            if key not in SCHEMA[section]:
                all_keys = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]
                hint = _nearest(key, list(SCHEMA[section])) or _nearest(f"{section}.{key}", all_keys)
                raise SpaceError(f"unknown key '{section}.{key}'{where}." + hint)
    for section, settings in SCHEMA.items():
        table = document.get(section, {})
        for key, setting in settings.items():
            full_key = f"{section}.{key}"
            value = table.get(key, setting.default)
            if isinstance(value, dict):
                if not setting.searchable:
                    raise SpaceError(f"{full_key}{where} cannot be searched; give it a single value.")
                try:
                    space.params[full_key] = _parse_param(full_key, value, setting)
                except SpaceError as error:
                    raise SpaceError(f"{error}{' (' + str(source) + ')' if source else ''}") from None
                continue
            problem = setting.check(value)
            if problem:
                raise SpaceError(f"{full_key}{where}: value {value!r} {problem}.")
            space.fixed[full_key] = value
    if space.fixed["search.tuner"] != "hyperband" and space.fixed["search.max_trials"] == 0:
        raise SpaceError(f"search.max_trials{where} must be set for the {space.fixed['search.tuner']} tuner, "
                         "which has no budget of its own; for example max_trials = 20.")
    return space


def available_spaces() -> list[str]:
    """Return the names of the spaces shipped in `search_spaces/`."""
    return sorted(path.stem for path in SPACES_DIR.glob("*.toml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a shipped space by name (`baseline`, `default`, `quick`) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = SPACES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            names = available_spaces()
            raise SpaceError(f"search space '{name_or_path}' not found." + _nearest(str(name_or_path), names)
                             + " Shipped spaces: " + ", ".join(names) + "; or pass a path to a .toml file.")
    if not path.is_file():
        raise SpaceError(f"search space file {path} not found. Check the path, or pass a shipped space: "
                         + ", ".join(available_spaces()) + ".")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SpaceError(f"{path} is not valid TOML: {error}.") from None
    except UnicodeDecodeError:
        raise SpaceError(f"{path} is not UTF-8 text.") from None
    return parse_space(document, name=path.stem, source=path)
