"""Read and check a face photo dataset with ages.

A dataset is a labels CSV with one row per photo (file name and age in
years) and a folder of photos. By default they are `ROOT/labels.csv` with
columns `file_name,real_age` and `ROOT/final_files/`. `check_dataset` reads
both and reports every problem in one pass. Nothing here writes to the
dataset.

Fatal problems, which make `load_dataset` raise `DataError` listing all of them:

- The dataset folder, labels CSV or images folder is missing.
- The labels CSV is empty (zero bytes, or a header with no data rows) or is not UTF-8.
- The labels CSV cannot be parsed: bad quoting, or a row whose field count
  differs from the header's. Such a row cannot be trusted to put the age in
  the age column.
- The file or age column is missing. The message suggests the closest column names.
- No usable row is left after skipping the rows below.

Row problems skip the row with a warning that names the CSV line (1-based,
the header is line 1), the file and the value:

- The age is missing or NaN, is not a number, is negative, or is above 120.
- The photo file is missing.
- The photo cannot be decoded: zero bytes, not an image, truncated or
  corrupt, or a format that `tf.io.decode_image` cannot read (it reads JPEG,
  PNG, BMP, GIF and WebP).
- The file name is on more than one row. Exact duplicates (same age) keep the
  first row. If the copies disagree on the age, all copies are skipped,
  because the true age is unknown. Duplicates are counted among rows with
  valid ages only.

Read as usual, with a warning: a UTF-8 byte order mark (BOM), and a `;`, tab
or `|` delimiter instead of `,`, which is detected from the header line.

`tuner.labels_csv` reads the CSV; this module checks its rows and photos.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError

# DatasetLayout, Problem, PROBLEM_KINDS, count_rows, DELIMITERS and DELIMITER_NAMES stay
# importable from here, as they were before the labels CSV reader moved out.
from tuner.dataset_layout import PROBLEM_KINDS, DatasetLayout, Problem, count_rows, list_entries
from tuner.errors import DataError
from tuner.labels_csv import DELIMITER_NAMES, DELIMITERS, LabelTable, read_labels

__all__ = ["DECODABLE_FORMATS", "DELIMITERS", "DELIMITER_NAMES", "LOG_LIMIT_PER_KIND", "MAX_AGE", "MESSAGE_LIMIT",
           "PROBLEM_KINDS", "DatasetCheck", "DatasetLayout", "Problem", "check_dataset", "count_rows",
           "load_dataset"]

logger = logging.getLogger(__name__)

MAX_AGE = 120.0
#: Formats, as PIL names them, that `tf.io.decode_image` reads. MPO is a JPEG
#: with extra frames, as some cameras write.
DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP"})
#: Maximum number of problems listed in one error message, and of warnings of one kind logged.
MESSAGE_LIMIT = 20
LOG_LIMIT_PER_KIND = 10

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


# --------------------------------------------------------------------------
# The result of a check


@dataclass
class DatasetCheck:
    """Result of `check_dataset`: the usable rows and every problem found."""

    layout: DatasetLayout
    frame: pd.DataFrame
    problems: list[Problem]

    @property
    def fatal(self) -> bool:
        """Whether any problem makes the dataset unusable."""
        return any(problem.fatal for problem in self.problems)

    @property
    def warnings(self) -> list[Problem]:
        """The non-fatal problems."""
        return [problem for problem in self.problems if not problem.fatal]

    @property
    def skipped_lines(self) -> list[int]:
        """CSV line numbers of the skipped rows, in ascending order."""
        return sorted({p.line for p in self.problems if not p.fatal and p.line is not None})

    def summary(self) -> dict[str, Any]:
        """Return photo and skipped row counts and age statistics in years.

        The age statistics are None when there are no usable rows.
        """
        ages = self.frame["age"].astype("float64")
        statistics: dict[str, Any] = {"photos": len(self.frame), "skipped_rows": len(self.skipped_lines)}
        if ages.empty:
            statistics.update(age_min=None, age_max=None, age_mean=None, age_median=None)
        else:
            statistics.update(
                age_min=round(float(ages.min()), 2),
                age_max=round(float(ages.max()), 2),
                age_mean=round(float(ages.mean()), 2),
                age_median=round(float(ages.median()), 2),
            )
        return statistics

    def raise_if_fatal(self) -> None:
        """Raise `DataError` listing every fatal problem, up to `MESSAGE_LIMIT` of them."""
        fatal = [problem.message for problem in self.problems if problem.fatal]
        if not fatal:
            return
        lines = [f"Cannot use the dataset at {self.layout.root}:"]
        lines += _capped_list(fatal, MESSAGE_LIMIT, "more problems")
        skipped = len(self.skipped_lines)
        # "No usable rows" already counts every row as skipped.
        if skipped and not any(problem.kind == "no_rows" for problem in self.problems):
            lines.append(f"In addition, {count_rows(skipped)} would be skipped because of the problems in the warnings.")
        raise DataError("\n".join(lines))


@dataclass(frozen=True)
class _Row:
    line: int
    file: str
    age: float


# --------------------------------------------------------------------------
# Checking and loading


def check_dataset(layout: DatasetLayout, verify_images: bool = True) -> DatasetCheck:
    """Check a dataset and return its usable rows with every problem found.

    `verify_images` decodes every photo (at reduced size for JPEG) to catch
    corrupt and truncated files. Without it, only the existence of each photo
    is checked. The frame has columns file_name (str), age (float32) and path
    (absolute str), in CSV order, with a fresh index.
    """
    problems: list[Problem] = []
    images_ok = _check_folders(layout, problems)
    table = read_labels(layout, problems)

    rows: list[_Row] = []
    if table is not None:
        rows = _parse_ages(table, layout, problems)
        rows = _drop_duplicates(rows, layout, problems)
        if images_ok:
            rows = _check_photos(rows, layout, verify_images, problems)
        else:
            # Without the images folder no row is usable, and listing every
            # photo as missing would bury the one real problem.
            rows = []

    fatal_so_far = any(problem.fatal for problem in problems)
    if not rows and not fatal_so_far:
        total = len(table.rows) if table is not None else 0
        problems.append(
            Problem(
                f"No usable rows in {layout.labels_path.name}: all {total} rows were skipped. "
                "Fix the rows named in the warnings.",
                fatal=True,
                kind="no_rows",
            )
        )

    # Problems about the whole file first, then rows from top to bottom.
    problems.sort(key=lambda problem: -1 if problem.line is None else problem.line)
    return DatasetCheck(layout=layout, frame=_build_frame(rows, layout), problems=problems)


def load_dataset(layout: DatasetLayout, verify_images: bool = True) -> pd.DataFrame:
    """Check a dataset, log its warnings and return its usable rows.

    Raises `DataError` listing every fatal problem. Warnings are logged up to
    `LOG_LIMIT_PER_KIND` per kind, then counted.
    """
    check = check_dataset(layout, verify_images=verify_images)
    log_warnings(check.warnings)
    check.raise_if_fatal()
    summary = check.summary()
    logger.info(
        "Loaded %d photos from %s (%s skipped); ages %s to %s, mean %s, median %s",
        summary["photos"],
        layout.root,
        count_rows(summary["skipped_rows"]),
        _format_number(summary["age_min"]),
        _format_number(summary["age_max"]),
        _format_number(summary["age_mean"]),
        _format_number(summary["age_median"]),
    )
    return check.frame


def _check_folders(layout: DatasetLayout, problems: list[Problem]) -> bool:
    """Add a fatal problem if the root or images folder is missing, and return whether images exist."""
    relative = not Path(layout.labels).is_absolute() and not Path(layout.images).is_absolute()
    if relative and not layout.root.is_dir():
        problems.append(
            Problem(
                f"Dataset folder not found: {layout.root}. Check the path: the folder must "
                f"contain {layout.labels} and {layout.images}/.",
                fatal=True,
                kind="dataset",
            )
        )
        return False

    images = layout.images_dir
    if images.is_dir():
        return True
    if images.exists():
        message = f"The images path {images} is not a folder. Pass --images DIR with the folder of photos."
    else:
        message = f"Images folder not found: {images}. Pass --images DIR with the folder of photos."
        folders = list_entries(layout.root, lambda path: path.is_dir())
        if folders:
            message += f" Folders in {layout.root}: {folders}."
    problems.append(Problem(message, fatal=True, kind="dataset"))
    return False


# --------------------------------------------------------------------------
# Row checks


def _parse_ages(table: LabelTable, layout: DatasetLayout, problems: list[Problem]) -> list[_Row]:
    """Return the rows with a file name and a valid age, and add a warning for each other row."""
    rows: list[_Row] = []
    for line, fields in table.rows:
        file = fields[table.file_index].strip()
        raw_age = fields[table.age_index].strip()
        where = f"{table.name} line {line} ({file})" if file else f"{table.name} line {line}"

        if not file:
            problems.append(
                Problem(
                    f"{where}: the file name in column '{layout.file_column}' is empty. Skipped the row.",
                    fatal=False,
                    line=line,
                    file=None,
                    kind="file_name",
                )
            )
            continue

        age, error = _parse_age(raw_age, table.delimiter)
        if error is not None:
            problems.append(Problem(f"{where}: {error}. Skipped the row.", fatal=False, line=line, file=file, kind="age"))
            continue
        rows.append(_Row(line=line, file=file, age=age))
    return rows


def _parse_age(raw: str, delimiter: str) -> tuple[float, str | None]:
    """Return the age in years, or NaN and the reason it is invalid."""
    if raw == "":
        return math.nan, "age is missing. Fill in the age in years or remove the row"
    text = raw
    # Spreadsheets that export with ';' usually write decimals with a comma.
    if delimiter != "," and _DECIMAL_COMMA.match(raw):
        text = raw.replace(",", ".")
    try:
        age = float(text)
    except ValueError:
        return math.nan, f"age {raw!r} is not a number. Write the age in years, such as 35"
    if math.isnan(age):
        return math.nan, f"age is missing ({raw!r}). Fill in the age in years or remove the row"
    if age < 0:
        return math.nan, f"age {raw} is negative. Ages are in years, from 0 to {MAX_AGE:g}"
    if age > MAX_AGE:
        return math.nan, f"age {raw} is above {MAX_AGE:g}, the maximum accepted age. Correct the age or remove the row"
    return age, None


def _drop_duplicates(rows: list[_Row], layout: DatasetLayout, problems: list[Problem]) -> list[_Row]:
    """Keep the first of identical rows for a file, and drop all rows of a file listed with different ages."""
    name = layout.labels_path.name
    copies: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        copies[row.file].append(row)

    dropped: set[int] = set()
    for file, group in copies.items():
        if len(group) == 1:
            continue
        ages = {row.age for row in group}
        if len(ages) == 1:
            first = group[0]
            for row in group[1:]:
                problems.append(
                    Problem(
                        f"{name} line {row.line} ({file}): duplicate of line {first.line} with the same age. "
                        "Skipped the copy.",
                        fatal=False,
                        line=row.line,
                        file=file,
                        kind="duplicate",
                    )
                )
                dropped.add(row.line)
            continue

        lines = _join_words([str(row.line) for row in group])
        listed_ages = ", ".join(_format_number(row.age) for row in group)
        for row in group:
            problems.append(
                Problem(
                    f"{name} line {row.line} ({file}): the file is listed on lines {lines} with different ages "
                    f"({listed_ages}). Skipped all copies. Keep one row with the right age.",
                    fatal=False,
                    line=row.line,
                    file=file,
                    kind="duplicate",
                )
            )
            dropped.add(row.line)
    return [row for row in rows if row.line not in dropped]


def _check_photos(
    rows: list[_Row], layout: DatasetLayout, verify_images: bool, problems: list[Problem]
) -> list[_Row]:
    """Return the rows whose photo exists (and decodes, with `verify_images`), and add a warning for each other row."""
    name = layout.labels_path.name
    images = layout.images_dir
    paths = [images / row.file for row in rows]
    started = time.perf_counter()

    if verify_images:
        # The default False makes PIL raise on a truncated image instead of
        # padding it with grey, which is the point of decoding it here.
        truncated_setting = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            # PIL releases the GIL in its C decoder, so threads decode in
            # parallel. Header parsing runs in Python and does not overlap.
            with ThreadPoolExecutor() as pool:
                errors = list(pool.map(_inspect_photo, paths))
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated_setting
    else:
        errors = [_inspect_photo(path, decode=False) for path in paths]

    listing: dict[str, str] | None = None
    usable: list[_Row] = []
    for row, path, error in zip(rows, paths, errors):
        if error is None:
            usable.append(row)
            continue
        kind = "bad_photo"
        if error == "not found":
            kind = "missing_photo"
            error = f"photo not found at {path}"
            if listing is None:
                listing = _folder_listing(images)
            alternative = listing.get(row.file.lower())
            if alternative is not None:
                error += f". Did you mean '{alternative}'? File names are case-sensitive"
        problems.append(
            Problem(f"{name} line {row.line} ({row.file}): {error}. Skipped the row.", False, row.line, row.file, kind)
        )

    logger.debug(
        "Checked %d photos in %.1f s (%s)", len(rows), time.perf_counter() - started,
        "decoded" if verify_images else "existence only",
    )
    return usable


def _inspect_photo(path: Path, decode: bool = True) -> str | None:
    """Return why the photo is unusable, or None if it is fine.

    Without `decode` only the file's existence is checked. With it, the photo
    is decoded as well and must be in a format TensorFlow decodes.
    """
    try:
        status = path.stat()
    except FileNotFoundError:
        return "not found"
    except OSError as error:
        return f"photo cannot be read: {error.strerror or error}"
    if not stat.S_ISREG(status.st_mode):
        return "photo path is not a regular file"
    if not decode:
        return None
    if status.st_size == 0:
        return "photo is empty (0 bytes). Replace or remove the photo"

    try:
        with Image.open(path) as image:
            if image.format not in DECODABLE_FORMATS:
                return (
                    f"photo is a {image.format} image, which TensorFlow cannot decode. "
                    "Convert it to JPEG or PNG"
                )
            # JPEG decodes at 1/8 scale with draft(), which is much faster and
            # still reads the whole entropy-coded stream, so truncation shows.
            # Other formats ignore draft().
            image.draft(image.mode, (1, 1))
            image.load()
    except PermissionError as error:
        return f"photo cannot be read: {error.strerror}"
    except UnidentifiedImageError:
        return "photo is not an image file that PIL recognizes. Replace or remove the photo"
    except Image.DecompressionBombError as error:
        return f"photo is too large to decode safely: {error}"
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
        # PIL plugins raise all of these for corrupt files.
        return f"photo cannot be decoded: {error}. Replace or remove the photo"
    return None


def _folder_listing(folder: Path) -> dict[str, str]:
    """Map lower-cased file names in `folder` to their real names."""
    try:
        return {entry.lower(): entry for entry in os.listdir(folder)}
    except OSError:
        return {}


def _build_frame(rows: list[_Row], layout: DatasetLayout) -> pd.DataFrame:
    images = os.path.abspath(layout.images_dir)
    return pd.DataFrame(
        {
            "file_name": pd.Series([row.file for row in rows], dtype=str),
            "age": np.array([row.age for row in rows], dtype=np.float32),
            "path": pd.Series([os.path.join(images, row.file) for row in rows], dtype=str),
        }
    )


def log_warnings(warnings: Iterable[Problem]) -> None:
    """Log each warning, at most `LOG_LIMIT_PER_KIND` per kind, then the count of the rest."""
    logged: Counter[str] = Counter()
    for problem in warnings:
        logged[problem.kind] += 1
        if logged[problem.kind] <= LOG_LIMIT_PER_KIND:
            logger.warning("%s", problem.message)
    for kind, count in logged.items():
        if count > LOG_LIMIT_PER_KIND:
            logger.warning(
                "%d more warnings of the kind '%s' were not logged.",
                count - LOG_LIMIT_PER_KIND,
                PROBLEM_KINDS.get(kind, kind),
            )


# --------------------------------------------------------------------------
# Formatting helpers


def _capped_list(items: Sequence[str], limit: int, rest_label: str) -> list[str]:
    lines = [f"  - {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} {rest_label}")
    return lines


def _join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _format_number(value: float | None) -> str:
    """Format a number without a trailing '.0', or 'n/a' for None."""
    if value is None:
        return "n/a"
    return f"{value:g}" if float(value).is_integer() else f"{value:.2f}".rstrip("0")
