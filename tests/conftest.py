"""Shared fixtures: a seed, a random generator, and tiny datasets in the study's layout."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tuner.data import DatasetLayout

#: Folder of real face photos next to the repository, absent on most machines.
REAL_FACES = Path(__file__).parents[1].parent / "shared" / "faces"

PhotoWriter = Callable[..., None]


@pytest.fixture
def seed() -> int:
    """Seed for every random draw in a test, so failures reproduce."""
    return 1234


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def write_photo(rng: np.random.Generator) -> PhotoWriter:
    """Return a function `write(path, size=16, mode="RGB", format="JPEG")` that saves a random-noise photo.

    `mode` is "RGB" or "L" (grayscale), and `format` is any format PIL writes.
    """

    def write(path: Path, size: int = 16, mode: str = "RGB", format: str = "JPEG") -> None:
        channels = {"RGB": 3, "L": 1}[mode]
        pixels = rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)
        image.save(path, format=format)

    return write


@pytest.fixture
def make_faces(tmp_path: Path, write_photo: PhotoWriter) -> Callable[..., DatasetLayout]:
    """Return a factory for a dataset of noise JPEGs named 000000.jpg, 000001.jpg, ... in `tmp_path`.

    The factory takes `ages` (one row per age, default six distinct ages),
    `size` in pixels and the folder `name`. Labels go to labels.csv with the
    columns file_name,real_age, and photos to final_files/.
    """

    def make(ages: Sequence[float] = (5, 20, 31, 47, 62, 80), size: int = 16, name: str = "faces") -> DatasetLayout:
        root = tmp_path / name
        images = root / "final_files"
        images.mkdir(parents=True)
        lines = ["file_name,real_age"]
        for index, age in enumerate(ages):
            file_name = f"{index:06d}.jpg"
            write_photo(images / file_name, size=size)
            lines.append(f"{file_name},{age}")
        (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return DatasetLayout(root=root)

    return make


@pytest.fixture
def real_faces() -> DatasetLayout:
    """Layout of the real face photos next to the repository. Skips the test where they are absent."""
    if not (REAL_FACES / "labels.csv").is_file():
        pytest.skip(f"real face photos not found at {REAL_FACES}; their licence forbids shipping them")
    return DatasetLayout(REAL_FACES)


@pytest.fixture(autouse=True)
def reset_agetune_logging() -> Iterator[None]:
    """Undo the CLI's logging set-up after each test, so that caplog sees agetune's records in the next."""
    yield
    logger = logging.getLogger("tuner")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-trial search on synthetic faces; read it, never write into it."""
    from tests.tiny_run import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("tiny"))
