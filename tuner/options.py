"""The options of `agetune search`, and the input checks that need no TensorFlow.

`check_before_tensorflow` runs before the command imports TensorFlow, which
takes seconds and prints C++ notices of its own. A wrong space key, dataset
path, labels CSV or weights file is then reported at once, on a clean
terminal. `tuner.search.prepare_search` checks everything again, photos
included, when the search starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.data_check import DatasetLayout, check_dataset
from tuner.errors import WeightsError
from tuner.run import RunFolder
from tuner.space import SearchSpace, load_space


@dataclass
class SearchOptions:
    """Everything `agetune search` was asked to do; fields left None take the space's values."""

    space: str | Path = "quick"
    data: Path | None = None
    layout: dict[str, str] = field(default_factory=dict)
    run_dir: Path | None = None
    tuner: str | None = None
    weights: str | None = None
    image_size: int | None = None
    max_epochs: int | None = None
    max_trials: int | None = None
    limit: int | None = None
    overwrite: bool = False
    mixed_precision: str = "auto"
    xla: str = "auto"
    verbose: int | None = None
    # prepare_search also logs to the run folder's search.log with this prefix on each line; None turns
    # that off in a worker process whose supervisor forwards its output to search.log.
    log_prefix: str | None = ""
    # False in a process that a supervisor starts again and again: the data summary and the warnings
    # of prepare_search go to debug output there, because its first start or its parent showed them.
    log_setup: bool = True

    def overrides(self) -> dict[str, Any]:
        """Return the space keys that command-line options replace."""
        pairs = {"search.tuner": self.tuner, "backbone.weights": self.weights, "data.image_size": self.image_size,
                 "search.max_epochs": self.max_epochs, "search.max_trials": self.max_trials}
        return {key: value for key, value in pairs.items() if value is not None}

    def resolved_space(self) -> SearchSpace:
        """Load the space file with the command-line overrides; raise `SpaceError` if either is invalid."""
        space = load_space(self.space)
        overrides = self.overrides()
        return space.with_overrides(overrides) if overrides else space


def default_run_dir(space: SearchSpace) -> Path:
    """Return runs/<space name>, the run folder used when none is given."""
    return Path("runs") / space.name


def weights_file(weights: str) -> Path | None:
    """Return the resolved path of a weights file setting, None for `imagenet` and `none`.

    Raises `WeightsError` when the file does not exist.
    """
    if weights in ("imagenet", "none"):
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"backbone weights file {path} not found. Pass --weights with the path to "
                           "a ResNet50 weights file without the top (.h5), 'imagenet' or 'none'.")
    return path.resolve()


def check_before_tensorflow(options: SearchOptions) -> None:
    """Check the space, the weights file and the labels CSV; raise the first fatal error found.

    The photos are only checked for existence here; `prepare_search` decodes
    them. A run folder that already has its data split is left to
    `prepare_search`: a resumed search trains on that split, not on the
    dataset folder as it is now.
    """
    space = options.resolved_space()
    weights_file(space.setting("backbone.weights"))
    if options.data is None:
        return
    run = RunFolder(Path(options.run_dir) if options.run_dir else default_run_dir(space))
    if run.split_path.exists() and not options.overwrite:
        return
    layout = DatasetLayout(root=Path(options.data), **options.layout)
    check_dataset(layout, verify_images=False).raise_if_fatal()
