"""Tests for tuner.synthetic: determinism, layout, age distribution and a learnable age signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tuner import synthetic
from tuner.data import check_dataset
from tuner.errors import DataError
from tuner.synthetic import (
    SYNTHETIC_WARNING,
    default_dataset,
    make_synthetic_faces,
    sample_ages,
    synthetic_warning,
)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    first = make_synthetic_faces(tmp_path / "a", count=20, image_size=32, seed=7)
    second = make_synthetic_faces(tmp_path / "b", count=20, image_size=32, seed=7)

    assert first.labels_path.read_bytes() == second.labels_path.read_bytes()
    for name in ["000000.jpg", "000007.jpg", "000019.jpg"]:
        assert (first.images_dir / name).read_bytes() == (second.images_dir / name).read_bytes()


def test_image_does_not_depend_on_count(tmp_path: Path) -> None:
    small = make_synthetic_faces(tmp_path / "small", count=5, image_size=32, seed=3)
    large = make_synthetic_faces(tmp_path / "large", count=12, image_size=32, seed=3)

    for index in range(5):
        name = f"{index:06d}.jpg"
        assert (small.images_dir / name).read_bytes() == (large.images_dir / name).read_bytes()


def test_seed_changes_images(tmp_path: Path) -> None:
    first = make_synthetic_faces(tmp_path / "a", count=3, image_size=32, seed=0)
    second = make_synthetic_faces(tmp_path / "b", count=3, image_size=32, seed=1)

    assert (first.images_dir / "000000.jpg").read_bytes() != (second.images_dir / "000000.jpg").read_bytes()


def test_layout_passes_check(tmp_path: Path) -> None:
    layout = make_synthetic_faces(tmp_path / "faces", count=30, image_size=48, seed=0)

    check = check_dataset(layout)

    assert layout.root == tmp_path / "faces"
    assert layout.labels_path.read_text(encoding="utf-8").splitlines()[0] == "file_name,real_age"
    assert check.problems == []
    assert check.summary()["photos"] == 30
    with Image.open(layout.images_dir / "000000.jpg") as image:
        assert image.format == "JPEG"
        assert image.size == (48, 48)
        assert image.mode == "RGB"
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["faces"]


def test_age_distribution_is_right_skewed() -> None:
    ages = sample_ages(20000, seed=0)

    assert ages.dtype == np.int64
    assert ages.min() >= 1
    assert ages.max() <= 90
    assert 27 <= np.median(ages) <= 32
    assert ages.mean() > np.median(ages)
    assert 0.05 < (ages <= 12).mean() < 0.2
    assert (ages >= 65).mean() > 0.03


def test_age_signal_is_learnable(tmp_path: Path) -> None:
    layout = make_synthetic_faces(tmp_path / "faces", count=300, image_size=32, seed=0)
    labels = pd.read_csv(layout.labels_path)
    ages = labels["real_age"].to_numpy(dtype=np.float64)
    pixels = np.stack(
        [
            np.asarray(Image.open(layout.images_dir / name).resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
            for name in labels["file_name"]
        ]
    )
    features = np.hstack([pixels.reshape(len(ages), -1) / 255.0, np.ones((len(ages), 1))])
    train, test = slice(0, 200), slice(200, 300)

    # Ridge regression on 8x8 RGB pixels, fitted on 200 images and scored on the other 100.
    gram = features[train].T @ features[train] + 1.0 * np.eye(features.shape[1])
    weights = np.linalg.solve(gram, features[train].T @ ages[train])
    correlation = np.corrcoef(features[test] @ weights, ages[test])[0, 1]

    assert correlation > 0.5


def test_existing_folder_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    (root / "mine.txt").write_text("keep", encoding="utf-8")

    with pytest.raises(DataError, match="the path exists and is not an empty folder"):
        make_synthetic_faces(root, count=3, image_size=32)

    assert sorted(entry.name for entry in root.iterdir()) == ["mine.txt"]
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["photos"]


def test_empty_folder_is_filled(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()

    layout = make_synthetic_faces(root, count=3, image_size=32)

    assert check_dataset(layout).summary()["photos"] == 3


def test_same_settings_reuse_folder(tmp_path: Path) -> None:
    layout = make_synthetic_faces(tmp_path / "faces", count=3, image_size=32)
    before = (layout.images_dir / "000000.jpg").stat().st_mtime_ns

    again = make_synthetic_faces(tmp_path / "faces", count=3, image_size=32)

    assert again == layout
    assert (layout.images_dir / "000000.jpg").stat().st_mtime_ns == before


def test_invalid_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count must be at least 1"):
        make_synthetic_faces(tmp_path / "a", count=0)
    with pytest.raises(ValueError, match="image_size must be at least 16"):
        make_synthetic_faces(tmp_path / "a", image_size=8)


@pytest.fixture
def small_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the default dataset so default_dataset runs in well under a second."""
    monkeypatch.setattr(synthetic, "DEFAULT_COUNT", 8)
    monkeypatch.setattr(synthetic, "DEFAULT_IMAGE_SIZE", 32)


@pytest.mark.usefixtures("small_default")
def test_default_dataset_created_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = default_dataset(tmp_path)

    assert layout.root == tmp_path / "synthetic-faces-v1"
    assert json.loads((layout.root / "synthetic.json").read_text(encoding="utf-8"))["count"] == 8
    assert check_dataset(layout).summary()["photos"] == 8

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset was generated again")

    monkeypatch.setattr(synthetic, "make_synthetic_faces", fail)
    assert default_dataset(tmp_path) == layout


@pytest.mark.usefixtures("small_default")
def test_default_dataset_replaces_incomplete(tmp_path: Path) -> None:
    root = tmp_path / "synthetic-faces-v1"
    (root / "final_files").mkdir(parents=True)
    (root / "labels.csv").write_text("file_name,real_age\n", encoding="utf-8")

    layout = default_dataset(tmp_path)

    assert check_dataset(layout).summary()["photos"] == 8
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["synthetic-faces-v1"]


@pytest.mark.usefixtures("small_default")
def test_default_dataset_uses_agetune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGETUNE_HOME", str(tmp_path / "home"))

    layout = default_dataset()

    assert layout.root == tmp_path / "home" / "synthetic-faces-v1"
    assert layout.labels_path.is_file()


def test_warning_names_count_and_path(tmp_path: Path) -> None:
    layout = make_synthetic_faces(tmp_path / "faces", count=4, image_size=32)

    message = synthetic_warning(layout)

    assert message == SYNTHETIC_WARNING.format(count=4, path=layout.root)
    assert message == (
        f"Using the built-in synthetic dataset (4 generated images, not real faces) at {layout.root}; "
        "pass --data DIR for real photos."
    )
