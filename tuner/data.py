"""Split a checked face photo dataset into train and validation subsets, and load it for training.

`split_dataset` assigns each usable photo to a subset, `save_split` and
`load_split` store that split in a run folder, and `make_dataset` builds the
tf.data pipeline of (images, ages) batches. `describe_dataset` writes the
exploratory summary of a checked dataset.

Reading and checking a dataset (`DatasetLayout`, `check_dataset`,
`load_dataset` and the problems they report) is in `tuner.data_check`, which
reads the labels CSV with `tuner.labels_csv`. Its public names are
re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

# Besides the names used here, this import re-exports the other public names of tuner.data_check,
# because callers import them from tuner.data.
from tuner.data_check import (  # noqa: F401
    DECODABLE_FORMATS,
    DELIMITER_NAMES,
    DELIMITERS,
    LOG_LIMIT_PER_KIND,
    MAX_AGE,
    MESSAGE_LIMIT,
    PROBLEM_KINDS,
    DatasetCheck,
    DatasetLayout,
    Problem,
    _capped_list,
    _format_number,
    check_dataset,
    count_rows,
    load_dataset,
)
from tuner.errors import DataError

if TYPE_CHECKING:
    # TensorFlow is imported inside `make_dataset`, so that checking a dataset
    # does not pay its multi-second import.
    import tensorflow as tf

logger = logging.getLogger(__name__)

#: Age bands of the exploratory summary, as [low, high) in years.
AGE_BANDS = (
    ("0-12", 0.0, 13.0),
    ("13-17", 13.0, 18.0),
    ("18-24", 18.0, 25.0),
    ("25-34", 25.0, 35.0),
    ("35-44", 35.0, 45.0),
    ("45-54", 45.0, 55.0),
    ("55-64", 55.0, 65.0),
    ("65+", 65.0, math.inf),
)
SPLIT_COLUMNS = ("file_name", "age", "subset", "path")
SUBSETS = ("train", "validation")


# --------------------------------------------------------------------------
# Train and validation split


def split_dataset(frame: pd.DataFrame, validation_fraction: float = 0.25, seed: int = 0) -> pd.DataFrame:
    """Return a copy of `frame` with a 'subset' column of "train" or "validation".

    Each row goes to validation when a hash of (seed, file_name), mapped to
    [0, 1), is below `validation_fraction`. A row's subset therefore depends
    only on its file name and the seed. Reordering rows or adding rows never
    moves an existing row to the other subset. The validation share is
    `validation_fraction` on average, not exactly.

    Raises `DataError` if the fraction is not strictly between 0 and 1, or if
    either subset would be empty.
    """
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, numbers.Real)
        or not 0.0 < float(validation_fraction) < 1.0
    ):
        raise DataError(
            f"Invalid validation fraction {validation_fraction!r}: it must be a number greater than 0 "
            "and less than 1, such as 0.25."
        )
    if "file_name" not in frame.columns:
        raise DataError("Cannot split the dataset: the frame has no 'file_name' column.")

    draws = np.array([_unit_hash(seed, name) for name in frame["file_name"]], dtype=np.float64)
    split = frame.copy()
    split["subset"] = np.where(draws < float(validation_fraction), "validation", "train")

    counts = split["subset"].value_counts()
    for subset in SUBSETS:
        if counts.get(subset, 0) == 0:
            raise DataError(
                f"The {subset} subset is empty after splitting {len(split)} photos with validation fraction "
                f"{validation_fraction}. Add photos or change the validation fraction."
            )
    logger.info(
        "Split %d photos into %d for training and %d for validation (seed %d)",
        len(split),
        counts["train"],
        counts["validation"],
        seed,
    )
    return split


def _unit_hash(seed: int, file_name: str) -> float:
    """Map (seed, file_name) to a uniform float in [0, 1), the same on every platform and run."""
    digest = hashlib.blake2b(f"{seed}\0{file_name}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def save_split(frame: pd.DataFrame, path: Path) -> None:
    """Write the split to `path` as CSV with columns file_name, age, subset, path.

    The file is written to a temporary file in the same folder and then
    renamed over `path`, so a reader never sees a partial file.
    """
    missing = [column for column in SPLIT_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"Cannot save the split to {path}: the frame lacks the columns {missing}.")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    replaced = False
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            frame.loc[:, list(SPLIT_COLUMNS)].to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file readable by its owner only. A split is not secret.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
        replaced = True
    finally:
        if not replaced:
            Path(temporary).unlink(missing_ok=True)


def check_split_photos(split: pd.DataFrame, split_path: Path) -> None:
    """Raise `DataError` when photos of a saved split are gone; a resumed search trains on exactly those files."""
    missing = [path for path in split["path"] if not Path(path).is_file()]
    if missing:
        raise DataError(f"{len(missing)} of {len(split)} photos in {split_path} are missing, such as {missing[0]}. "
                        "A resumed search trains on the photos of its split: put the dataset back where it was, "
                        "or pass --overwrite to start a new search.")


def load_split(path: Path) -> pd.DataFrame:
    """Read a split written by `save_split`.

    Raises `DataError` if the file is missing, cannot be parsed, lacks a
    column, or has an invalid age or subset.
    """
    path = Path(path)
    try:
        # na_filter=False keeps file names such as 'NA.jpg' as text.
        frame = pd.read_csv(path, dtype=str, na_filter=False, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"Split file not found: {path}.") from None
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"Cannot read the split file {path}: {error}.") from error

    missing = [column for column in SPLIT_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"Split file {path} lacks the columns {missing}. It must be written by save_split.")

    ages = pd.to_numeric(frame["age"], errors="coerce")
    bad_ages = frame.index[ages.isna()]
    if len(bad_ages):
        first = bad_ages[0]
        raise DataError(
            f"Split file {path} line {first + 2}: age {frame.at[first, 'age']!r} is not a number."
        )
    bad_subsets = frame.index[~frame["subset"].isin(SUBSETS)]
    if len(bad_subsets):
        first = bad_subsets[0]
        raise DataError(
            f"Split file {path} line {first + 2}: subset {frame.at[first, 'subset']!r} is not 'train' or 'validation'."
        )

    frame = frame.loc[:, list(SPLIT_COLUMNS)].copy()
    frame["age"] = ages.astype(np.float32)
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------
# tf.data pipeline


def make_dataset(
    frame: pd.DataFrame,
    image_size: int,
    batch_size: int,
    training: bool,
    cache: str | Path | None = "memory",
    seed: int = 0,
) -> tf.data.Dataset:
    """Build a tf.data pipeline of (images, ages) batches from the frame's 'path' and 'age' columns.

    Images are uint8 with shape [batch, image_size, image_size, 3], resized
    without keeping the aspect ratio. Ages are float32 with shape [batch].
    Grayscale photos become RGB, and GIFs give their first frame. There is no
    augmentation, and no scaling to the model's input range: the model does
    both, so the cache can hold uint8 pixels, 4x smaller than float32.

    `cache` is "memory", a folder for a file cache, or None for no cache. A
    file cache is named after the image size and a hash of the paths and
    ages, so another size or another set of photos never reuses it.
    With `training`, each epoch is shuffled again over the whole dataset.
    The seed fixes the shuffle, but for training the parallel decoding may
    deliver photos in any order. So two runs see the same batches only from
    the second epoch on, and only with a cache.
    """
    import tensorflow as tf

    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    missing = [column for column in ("path", "age") if column not in frame.columns]
    if missing:
        raise DataError(f"Cannot build the input pipeline: the frame lacks the columns {missing}.")
    if frame.empty:
        raise DataError("Cannot build the input pipeline from zero photos.")

    paths = frame["path"].astype(str).to_numpy()
    ages = frame["age"].to_numpy(dtype=np.float32)
    size = int(image_size)

    def load(path: tf.Tensor, age: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        image = tf.image.resize(image, (size, size))
        image = tf.saturate_cast(tf.round(image), tf.uint8)
        image.set_shape((size, size, 3))
        return image, age

    dataset = tf.data.Dataset.from_tensor_slices((paths, ages))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)

    # The cache is safe to reuse across epochs and trials because it contains
    # decoded, resized pixels from before any random step. Augmentation
    # happens in the model, and the shuffle comes after the cache.
    if cache is not None:
        if cache == "memory":
            dataset = dataset.cache()
        else:
            cache_file = _cache_file(Path(cache), paths, ages, size)
            logger.debug("Caching decoded images in %s", cache_file)
            dataset = dataset.cache(str(cache_file))

    if training:
        dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _cache_file(folder: Path, paths: np.ndarray, ages: np.ndarray, image_size: int) -> Path:
    """Return the file cache prefix for these photos and this image size in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(usedforsecurity=False)
    for path in paths:
        digest.update(str(path).encode("utf-8") + b"\0")
    digest.update(ages.astype(np.float32).tobytes())
    # NOTE: the key does not cover photo contents, so a photo replaced under
    # the same name is served from the old cache until the cache files are deleted.
    return folder / f"images-{image_size}px-{digest.hexdigest()[:16]}"


# --------------------------------------------------------------------------
# Exploratory summary


def describe_dataset(check: DatasetCheck, histogram_path: Path | None) -> str:
    """Return the exploratory summary of a checked dataset as text.

    The text has the photo count, age statistics, photo counts per age band,
    the problems grouped by kind and the skipped CSV lines. If
    `histogram_path` is given, an age histogram is saved there too (format
    from the file suffix, such as .png).
    """
    layout = check.layout
    summary = check.summary()
    lines = [
        f"Dataset: {layout.root}",
        f"Labels: {layout.labels_path}",
        f"Photos: {layout.images_dir}",
        f"Usable photos: {summary['photos']:,} ({count_rows(summary['skipped_rows'])} skipped)",
    ]

    if summary["photos"]:
        lines.append(
            f"Age (years): min {_format_number(summary['age_min'])}, max {_format_number(summary['age_max'])}, "
            f"mean {_format_number(summary['age_mean'])}, median {_format_number(summary['age_median'])}"
        )
        lines.append("Photos per age band:")
        ages = check.frame["age"].to_numpy(dtype=np.float64)
        width = max(len(f"{len(ages):,}"), 5)
        for label, low, high in AGE_BANDS:
            count = int(np.count_nonzero((ages >= low) & (ages < high)))
            lines.append(f"  {label:>6}  {count:>{width},}  {100.0 * count / len(ages):5.1f}%")

    lines += _describe_problems(check)

    if histogram_path is not None:
        if summary["photos"]:
            _save_histogram(check.frame["age"].to_numpy(dtype=np.float64), Path(histogram_path))
            lines.append(f"Age histogram: {histogram_path}")
        else:
            lines.append("Age histogram: not written, because there are no usable photos.")
    return "\n".join(lines)


def _describe_problems(check: DatasetCheck) -> list[str]:
    if not check.problems:
        return ["Problems: none"]

    fatal = sum(problem.fatal for problem in check.problems)
    lines = [f"Problems: {len(check.problems)} ({fatal} fatal)"]
    groups: dict[str, list[Problem]] = defaultdict(list)
    for problem in check.problems:
        groups[problem.kind].append(problem)
    order = list(PROBLEM_KINDS) + sorted(set(groups) - set(PROBLEM_KINDS))
    per_group = 5
    for kind in order:
        group = groups.get(kind)
        if not group:
            continue
        lines.append(f"  {PROBLEM_KINDS.get(kind, kind)} ({len(group)}):")
        messages = [("FATAL: " if problem.fatal else "") + problem.message for problem in group]
        lines += ["  " + line for line in _capped_list(messages, per_group, "more")]

    skipped = check.skipped_lines
    if skipped:
        listed = ", ".join(str(line) for line in skipped[:MESSAGE_LIMIT])
        rest = len(skipped) - MESSAGE_LIMIT
        lines.append(f"Skipped CSV lines: {listed}" + (f" and {rest} more" if rest > 0 else ""))
    return lines


def _save_histogram(ages: np.ndarray, path: Path) -> None:
    # Figure and the Agg canvas directly, without pyplot, so no GUI backend or global state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bins = np.arange(0.0, math.ceil(ages.max() / 5.0) * 5.0 + 5.0, 5.0)
    axes.hist(ages, bins=bins, color="#4c72b0", edgecolor="white")
    axes.axvline(float(np.mean(ages)), color="#c44e52", linestyle="--", label=f"mean {np.mean(ages):.1f}")
    axes.axvline(float(np.median(ages)), color="#55a868", linestyle=":", label=f"median {np.median(ages):.1f}")
    axes.set_xlabel("Age (years, 5-year bins)")
    axes.set_ylabel("Photos")
    axes.set_title(f"Age distribution of {len(ages):,} photos")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
