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

from tuner.data import check_split_photos, load_split
from tuner.data_check import DatasetLayout, check_dataset, log_warnings
from tuner.errors import AgetuneError, SpaceError, WeightsError
from tuner.run import RunFolder, run_folder_action
from tuner.space import SearchSpace, load_space, setting_problem

SWITCH_VALUES = ("auto", "on", "off")
#: Space keys that command-line options replace: the SearchOptions field and the option of each.
OVERRIDE_OPTIONS = {"search.tuner": ("tuner", "--tuner"), "backbone.weights": ("weights", "--weights"),
                    "data.image_size": ("image_size", "--image-size"),
                    "search.max_epochs": ("max_epochs", "--max-epochs"),
                    "search.max_trials": ("max_trials", "--max-trials")}
# Every HDF5 file starts with this signature, at byte 0 or after a user block of 512, 1024, 2048... bytes.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
        pairs = {key: getattr(self, field_name) for key, (field_name, _) in OVERRIDE_OPTIONS.items()}
        return {key: value for key, value in pairs.items() if value is not None}

    def resolved_space(self) -> SearchSpace:
        """Load the space file with the command-line overrides; raise `SpaceError` if either is invalid."""
        space = load_space(self.space)
        overrides = self.overrides()
        for key, value in overrides.items():
            # Checked here, so that the error names the option rather than the space file.
            problem = setting_problem(key, value)
            if problem:
                raise SpaceError(f"{OVERRIDE_OPTIONS[key][1]}: value {value!r} {problem}.")
        return space.with_overrides(overrides) if overrides else space


def default_run_dir(space: SearchSpace) -> Path:
    """Return runs/<space name>, the run folder used when none is given."""
    return Path("runs") / space.name


def config_document(space: SearchSpace, layout: DatasetLayout, limit: int | None, synthetic: bool) -> dict[str, Any]:
    """Return the run folder's config.json: the resolved space and where the data comes from."""
    return {
        "space_name": space.name,
        "space": space.to_document(),
        "data": {"root": str(layout.root.resolve()), "labels": layout.labels, "images": layout.images,
                 "file_column": layout.file_column, "age_column": layout.age_column,
                 "synthetic": synthetic, "limit": limit},
    }


def check_switch(value: str, name: str) -> None:
    """Raise `AgetuneError` unless an on/off option (`--mixed-precision`, `--xla`) is auto, on or off."""
    if value not in SWITCH_VALUES:
        raise AgetuneError(f"--{name} must be auto, on or off, got {value!r}.")


def weights_file(weights: str) -> Path | None:
    """Return the resolved path of a weights file setting, None for `imagenet` and `none`.

    Raises `WeightsError` when the file does not exist or is not an HDF5 file.
    """
    if weights in ("imagenet", "none"):
        return None
    path = Path(weights).expanduser()
    how_to = "Pass --weights with the path to a ResNet50 weights file without the top (.h5), 'imagenet' or 'none'."
    if not path.is_file():
        raise WeightsError(f"backbone weights file {path} not found. {how_to}")
    if not _is_hdf5(path):
        raise WeightsError(f"backbone weights file {path} is not an HDF5 (.h5) file. {how_to}")
    return path.resolve()


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as file:
        offset = 0
        while True:
            file.seek(offset)
            head = file.read(len(HDF5_SIGNATURE))
            if head == HDF5_SIGNATURE:
                return True
            if len(head) < len(HDF5_SIGNATURE):
                return False
            offset = 512 if offset == 0 else offset * 2


def check_before_tensorflow(options: SearchOptions) -> None:
    """Check the options, space, weights file, run folder and labels CSV; raise the first fatal error found.

    The photos are only checked for existence here; `prepare_search` decodes
    them. A resumed search trains on the split saved in its run folder, so
    for a resume the photos of that split are checked instead of the dataset
    folder.
    """
    check_switch(options.mixed_precision, "mixed-precision")
    check_switch(options.xla, "xla")
    space = options.resolved_space()
    weights_file(space.setting("backbone.weights"))
    run = RunFolder(Path(options.run_dir) if options.run_dir else default_run_dir(space))
    if options.data is None:
        # The synthetic dataset's config is only known once it exists; prepare_search compares it.
        run_folder_action(run, None, options.overwrite)
        return
    layout = DatasetLayout(root=Path(options.data), **options.layout)
    action, _ = run_folder_action(run, config_document(space, layout, options.limit, synthetic=False),
                                  options.overwrite)
    if action == "resume" and run.split_path.exists():
        check_split_photos(load_split(run.split_path), run.split_path)
        return
    check = check_dataset(layout, verify_images=False)
    if check.fatal:
        # The error refers to the rows named in the warnings, so they come first.
        log_warnings(check.warnings)
        check.raise_if_fatal()
