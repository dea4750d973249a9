"""The layout of a dataset's files, and the problems a check can find in them.

The labels CSV reader (`tuner.labels_csv`) and the dataset check
(`tuner.data_check`) share these types; callers import them from
`tuner.data` or `tuner.data_check`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Headings for `Problem.kind`, in the order reports list them.
PROBLEM_KINDS = {
    "dataset": "Dataset folders",
    "labels": "Labels file",
    "format": "CSV format",
    "columns": "Columns",
    "file_name": "Empty file names",
    "age": "Invalid ages",
    "duplicate": "Duplicate rows",
    "missing_photo": "Missing photos",
    "bad_photo": "Unreadable photos",
    "no_rows": "Usable rows",
}


def count_rows(count: int) -> str:
    """Return `count` with "row" or "rows", as in "1 row" and "1,024 rows"."""
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


@dataclass(frozen=True)
class DatasetLayout:
    """Locations of a dataset's labels CSV and photo folder, and the names of its file and age columns."""

    root: Path
    labels: str = "labels.csv"
    images: str = "final_files"
    file_column: str = "file_name"
    age_column: str = "real_age"

    def __post_init__(self) -> None:
        # Accept a str root from callers. The dataclass is frozen, hence object.__setattr__.
        object.__setattr__(self, "root", Path(self.root))

    @property
    def labels_path(self) -> Path:
        """Path of the labels CSV. An absolute `labels` ignores `root`."""
        return self.root / self.labels

    @property
    def images_dir(self) -> Path:
        """Path of the photo folder. An absolute `images` ignores `root`."""
        return self.root / self.images


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset.

    A non-fatal problem with a `line` means that row was skipped. `line` is the
    1-based line number in the labels CSV, where the header is line 1. `kind`
    is a key of `PROBLEM_KINDS`, used to group problems in reports, and is not
    compared.
    """

    message: str
    fatal: bool
    line: int | None = None
    file: str | None = None
    kind: str = field(default="labels", compare=False)


def list_entries(folder: Path, keep: Callable[[Path], bool], limit: int = 5) -> str:
    """Return up to `limit` entry names in `folder` that pass `keep`, comma-separated, or ''."""
    try:
        names = sorted(entry.name for entry in folder.iterdir() if keep(entry))
    except OSError:
        return ""
    listed = ", ".join(names[:limit])
    return listed + (f" and {len(names) - limit} more" if len(names) > limit else "")
