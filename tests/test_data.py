"""Tests for tuner.data: dataset checks, the split, the tf.data pipeline and the summary."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tuner.data import (
    DatasetCheck,
    DatasetLayout,
    Problem,
    check_dataset,
    count_rows,
    describe_dataset,
    load_dataset,
    load_split,
    make_dataset,
    save_split,
    split_dataset,
)
from tuner.errors import DataError

MakeFaces = Callable[..., DatasetLayout]
PhotoWriter = Callable[..., None]


def write_labels(layout: DatasetLayout, text: str | bytes) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    layout.labels_path.write_bytes(data)


def only_problem(check: DatasetCheck) -> Problem:
    assert len(check.problems) == 1, [problem.message for problem in check.problems]
    return check.problems[0]


def tree_digest(root: Path) -> dict[str, str]:
    """Map each file under `root` to the SHA-256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------
# A clean dataset


def test_clean_dataset_has_no_problems(make_faces: MakeFaces) -> None:
    layout = make_faces()

    check = check_dataset(layout)

    assert check.problems == []
    assert not check.fatal
    assert list(check.frame.columns) == ["file_name", "age", "path"]
    assert check.frame["age"].dtype == np.float32
    assert check.frame["file_name"].tolist() == [f"{index:06d}.jpg" for index in range(6)]
    assert check.frame["age"].tolist() == [5, 20, 31, 47, 62, 80]
    assert check.frame.index.tolist() == list(range(6))
    for path in check.frame["path"]:
        assert Path(path).is_absolute()
        assert Path(path).is_file()


def test_clean_dataset_summary(make_faces: MakeFaces) -> None:
    check = check_dataset(make_faces(ages=[1, 2, 3, 10.5]))

    assert check.summary() == {
        "photos": 4,
        "skipped_rows": 0,
        "age_min": 1.0,
        "age_max": 10.5,
        "age_mean": 4.12,
        "age_median": 2.5,
    }


def test_load_dataset_returns_frame(make_faces: MakeFaces) -> None:
    layout = make_faces()

    frame = load_dataset(layout)

    pd.testing.assert_frame_equal(frame, check_dataset(layout).frame)


def test_layout_accepts_str_and_absolute_paths(tmp_path: Path) -> None:
    layout = DatasetLayout(root=str(tmp_path), labels="/elsewhere/ages.csv", images="photos")

    assert layout.root == tmp_path
    assert layout.labels_path == Path("/elsewhere/ages.csv")
    assert layout.images_dir == tmp_path / "photos"


def test_custom_columns_and_folders(tmp_path: Path, write_photo: PhotoWriter) -> None:
    (tmp_path / "img").mkdir()
    write_photo(tmp_path / "img" / "a.png", format="PNG")
    (tmp_path / "ages.csv").write_text("name,years\na.png,40\n", encoding="utf-8")
    layout = DatasetLayout(tmp_path, labels="ages.csv", images="img", file_column="name", age_column="years")

    check = check_dataset(layout)

    assert check.problems == []
    assert check.frame["file_name"].tolist() == ["a.png"]


# --------------------------------------------------------------------------
# Fatal problems


def test_missing_labels_is_fatal(make_faces: MakeFaces) -> None:
    layout = make_faces()
    layout.labels_path.unlink()
    (layout.root / "ages.csv").write_text("x", encoding="utf-8")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line is None
    assert problem.file is None
    assert f"Labels file not found: {layout.labels_path}" in problem.message
    assert "--labels FILE" in problem.message
    assert "ages.csv" in problem.message


def test_missing_images_folder_is_fatal(make_faces: MakeFaces) -> None:
    layout = make_faces()
    (layout.images_dir).rename(layout.root / "photos")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line is None
    assert f"Images folder not found: {layout.images_dir}" in problem.message
    assert "--images DIR" in problem.message
    assert "photos" in problem.message


def test_missing_root_is_one_fatal_problem(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path / "absent")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert f"Dataset folder not found: {layout.root}" in problem.message
    assert "the folder must contain labels.csv and final_files/" in problem.message


def test_zero_byte_csv_is_fatal(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, b"")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line is None
    assert "is empty (0 bytes)" in problem.message
    assert "file_name,real_age" in problem.message


def test_header_only_csv_is_fatal(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "file_name,real_age\n")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line == 1
    assert "has a header but no data rows" in problem.message


def test_wrong_age_column_suggests_closest(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "file_name,age\n000000.jpg,5\n")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line == 1
    assert problem.message == (
        "Column 'real_age' not found in labels.csv. Found columns: 'file_name', 'age'. "
        "Did you mean 'age'? Pass --age-column age."
    )


def test_wrong_file_column_suggests_closest(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "File_Name,real_age\n000000.jpg,5\n")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert "Column 'file_name' not found" in problem.message
    assert "Did you mean 'File_Name'? Pass --file-column File_Name." in problem.message


def test_both_columns_wrong_are_both_reported(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "path,years\n000000.jpg,5\n")

    check = check_dataset(layout)

    messages = [problem.message for problem in check.problems]
    assert len(messages) == 2
    assert all(problem.fatal for problem in check.problems)
    assert "Column 'file_name' not found" in messages[0]
    assert "Column 'real_age' not found" in messages[1]
    assert "Pass --age-column NAME" in messages[1]


def test_missing_header_row_is_explained(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "000000.jpg,5\n000001.jpg,20\n")

    check = check_dataset(layout)

    assert check.fatal
    assert "looks like data, not a header" in check.problems[0].message
    assert "'file_name,real_age'" in check.problems[0].message


def test_row_with_extra_field_is_fatal(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "file_name,real_age\n000000.jpg,5\n000001.jpg,20,x\n")

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line == 3
    assert "line 3 cannot be parsed" in problem.message
    assert "3 fields but the header has 2" in problem.message


def test_row_with_one_field_says_field(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "file_name,real_age\n000000.jpg,5\n000001.jpg\n")

    problem = only_problem(check_dataset(layout))

    assert "it has 1 field but the header has 2" in problem.message


def test_unclosed_quote_names_start_line(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, 'file_name,real_age\n000000.jpg,5\n"000001.jpg,20\n000002.jpg,31\n')

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line == 3
    assert "line 3 cannot be parsed as CSV" in problem.message


def test_non_utf8_csv_is_fatal(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "file_name,real_age\n000000.jpg,5\nJos\xe9.jpg,20\n".encode("latin-1"))

    problem = only_problem(check_dataset(layout))

    assert problem.fatal
    assert problem.line == 3
    assert "not valid UTF-8" in problem.message
    assert "0xe9" in problem.message


def test_all_rows_skipped_is_fatal(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=["abc", -1])

    check = check_dataset(layout)

    assert check.fatal
    assert [problem.fatal for problem in check.problems] == [True, False, False]
    assert check.problems[0].message == (
        "No usable rows in labels.csv: all 2 rows were skipped. Fix the rows named in the warnings."
    )
    assert check.frame.empty
    with pytest.raises(DataError) as raised:
        check.raise_if_fatal()
    # "all 2 rows were skipped" counts them already; no second count of the same rows.
    assert str(raised.value) == (f"Cannot use the dataset at {layout.root}:\n"
                                 "  - No usable rows in labels.csv: all 2 rows were skipped. "
                                 "Fix the rows named in the warnings.")


def test_raise_if_fatal_lists_all(make_faces: MakeFaces) -> None:
    layout = make_faces()
    write_labels(layout, "path,years\na,1\n")

    with pytest.raises(DataError) as raised:
        check_dataset(layout).raise_if_fatal()

    message = str(raised.value)
    assert message.startswith(f"Cannot use the dataset at {layout.root}:")
    assert "Column 'file_name' not found" in message
    assert "Column 'real_age' not found" in message


def test_raise_if_fatal_caps_the_list(make_faces: MakeFaces) -> None:
    layout = make_faces()
    rows = "".join(f"{index:06d}.jpg,5,extra\n" for index in range(25))
    write_labels(layout, "file_name,real_age\n" + rows)

    with pytest.raises(DataError) as raised:
        load_dataset(layout)

    message = str(raised.value)
    assert message.count("cannot be parsed") == 20
    assert "... and 5 more problems" in message
    assert len(message.splitlines()) == 22


def test_raise_if_fatal_passes_without_fatal(make_faces: MakeFaces) -> None:
    check = check_dataset(make_faces(ages=[10, "abc"]))

    check.raise_if_fatal()


# --------------------------------------------------------------------------
# Formats read with a warning


def test_bom_is_read_with_warning(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, b"\xef\xbb\xbffile_name,real_age\n000000.jpg,10\n000001.jpg,20\n")

    check = check_dataset(layout)

    problem = only_problem(check)
    assert not problem.fatal
    assert problem.line is None
    assert "byte order mark" in problem.message
    assert check.frame["age"].tolist() == [10, 20]
    assert check.summary()["skipped_rows"] == 0


@pytest.mark.parametrize(
    ("delimiter", "name"),
    [(";", "';'"), ("\t", "tab"), ("|", "'|'")],
)
def test_other_delimiter_is_read_with_warning(make_faces: MakeFaces, delimiter: str, name: str) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, f"file_name{delimiter}real_age\n000000.jpg{delimiter}10\n000001.jpg{delimiter}20\n")

    check = check_dataset(layout)

    problem = only_problem(check)
    assert not problem.fatal
    assert problem.line is None
    assert f"uses {name} as the delimiter" in problem.message
    assert check.frame["age"].tolist() == [10, 20]


def test_semicolon_csv_reads_decimal_comma(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, "file_name;real_age\n000000.jpg;10,5\n000001.jpg;20\n")

    check = check_dataset(layout)

    assert check.frame["age"].tolist() == [10.5, 20]


def test_crlf_and_blank_lines_are_accepted(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, "file_name,real_age\r\n000000.jpg,10\r\n\r\n000001.jpg,20\r\n")

    check = check_dataset(layout)

    assert check.problems == []
    assert check.frame["age"].tolist() == [10, 20]


def test_bom_and_semicolon_keep_line_numbers(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, b"\xef\xbb\xbffile_name;real_age\n000000.jpg;10\n000001.jpg;abc\n")

    check = check_dataset(layout)

    assert [problem.line for problem in check.problems] == [None, None, 3]
    assert check.problems[2].file == "000001.jpg"


# --------------------------------------------------------------------------
# Skipped rows


@pytest.mark.parametrize(
    ("age", "words"),
    [
        ("abc", "age 'abc' is not a number"),
        ("", "age is missing"),
        ("nan", "age is missing ('nan')"),
        ("NaN", "age is missing ('NaN')"),
        ("-3", "age -3 is negative"),
        ("150", "age 150 is above 120"),
        ("120.5", "age 120.5 is above 120"),
        ("inf", "age inf is above 120"),
    ],
)
def test_invalid_age_skips_row(make_faces: MakeFaces, age: str, words: str) -> None:
    layout = make_faces(ages=[10, age, 30])

    check = check_dataset(layout)

    problem = only_problem(check)
    assert not problem.fatal
    assert problem.line == 3
    assert problem.file == "000001.jpg"
    assert problem.message.startswith("labels.csv line 3 (000001.jpg): ")
    assert words in problem.message
    assert "Skipped the row" in problem.message
    assert check.frame["file_name"].tolist() == ["000000.jpg", "000002.jpg"]
    assert check.skipped_lines == [3]


@pytest.mark.parametrize("age", ["0", "120", "33.5", " 41 "])
def test_boundary_ages_are_valid(make_faces: MakeFaces, age: str) -> None:
    layout = make_faces(ages=[age])

    check = check_dataset(layout)

    assert check.problems == []
    assert check.frame["age"].tolist() == [float(age)]


def test_empty_file_name_skips_row(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, "file_name,real_age\n000000.jpg,10\n,20\n000001.jpg,20\n")

    problem = only_problem(check_dataset(layout))

    assert not problem.fatal
    assert problem.line == 3
    assert problem.file is None
    assert "file name in column 'file_name' is empty" in problem.message


def test_missing_photo_skips_row(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20, 30])
    (layout.images_dir / "000001.jpg").unlink()

    check = check_dataset(layout)

    problem = only_problem(check)
    assert not problem.fatal
    assert problem.line == 3
    assert problem.file == "000001.jpg"
    assert f"photo not found at {layout.images_dir / '000001.jpg'}" in problem.message
    assert len(check.frame) == 2


def test_missing_photo_suggests_other_case(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    (layout.images_dir / "000001.jpg").rename(layout.images_dir / "000001.JPG")

    problem = only_problem(check_dataset(layout))

    assert "Did you mean '000001.JPG'?" in problem.message


def test_missing_photo_found_without_verify(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    (layout.images_dir / "000001.jpg").unlink()

    problem = only_problem(check_dataset(layout, verify_images=False))

    assert problem.line == 3
    assert "photo not found" in problem.message


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda path: path.write_bytes(b"this is not an image at all"), "not an image file"),
        (lambda path: path.write_bytes(b""), "photo is empty (0 bytes)"),
        (truncate, "image file is truncated"),
        (lambda path: path.write_bytes(path.read_bytes()[:-2]), "image file is truncated"),
    ],
    ids=["garbage", "empty", "truncated-half", "truncated-end"],
)
def test_corrupt_photo_skips_row(make_faces: MakeFaces, damage: Callable[[Path], None], words: str) -> None:
    layout = make_faces(ages=[10, 20, 30], size=64)
    damage(layout.images_dir / "000002.jpg")

    check = check_dataset(layout)

    problem = only_problem(check)
    assert not problem.fatal
    assert problem.line == 4
    assert problem.file == "000002.jpg"
    assert problem.message.startswith("labels.csv line 4 (000002.jpg): photo ")
    assert words in problem.message
    assert check.frame["file_name"].tolist() == ["000000.jpg", "000001.jpg"]


def test_corrupt_photo_passes_without_verify(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    (layout.images_dir / "000001.jpg").write_bytes(b"garbage")

    check = check_dataset(layout, verify_images=False)

    assert check.problems == []


def test_tiff_photo_is_rejected(make_faces: MakeFaces, write_photo: PhotoWriter) -> None:
    layout = make_faces(ages=[10, 20])
    write_photo(layout.images_dir / "000001.jpg", format="TIFF")

    problem = only_problem(check_dataset(layout))

    assert problem.line == 3
    assert "photo is a TIFF image, which TensorFlow cannot decode" in problem.message


@pytest.mark.parametrize(
    ("format", "mode"),
    [("PNG", "RGB"), ("PNG", "L"), ("BMP", "RGB"), ("GIF", "RGB"), ("WEBP", "RGB"), ("JPEG", "L")],
)
def test_decodable_formats_are_accepted(tmp_path: Path, write_photo: PhotoWriter, format: str, mode: str) -> None:
    (tmp_path / "final_files").mkdir()
    write_photo(tmp_path / "final_files" / "a.img", mode=mode, format=format)
    (tmp_path / "labels.csv").write_text("file_name,real_age\na.img,30\n", encoding="utf-8")

    check = check_dataset(DatasetLayout(tmp_path))

    assert check.problems == []


def test_identical_duplicates_keep_first(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, "file_name,real_age\n000000.jpg,10\n000001.jpg,20\n000000.jpg,10.0\n")

    check = check_dataset(layout)

    problem = only_problem(check)
    assert not problem.fatal
    assert problem.line == 4
    assert problem.file == "000000.jpg"
    assert "duplicate of line 2 with the same age" in problem.message
    assert check.frame["file_name"].tolist() == ["000000.jpg", "000001.jpg"]


def test_conflicting_duplicates_skip_all_copies(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, "file_name,real_age\n000000.jpg,10\n000001.jpg,20\n000000.jpg,12\n")

    check = check_dataset(layout)

    assert [(problem.fatal, problem.line, problem.file) for problem in check.problems] == [
        (False, 2, "000000.jpg"),
        (False, 4, "000000.jpg"),
    ]
    for problem in check.problems:
        assert "listed on lines 2 and 4 with different ages (10, 12)" in problem.message
        assert "Skipped all copies" in problem.message
    assert check.frame["file_name"].tolist() == ["000001.jpg"]
    assert check.summary()["skipped_rows"] == 2


def test_duplicate_with_invalid_age(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20])
    write_labels(layout, "file_name,real_age\n000000.jpg,abc\n000001.jpg,20\n000000.jpg,10\n")

    check = check_dataset(layout)

    problem = only_problem(check)
    assert problem.line == 2
    assert "not a number" in problem.message
    assert check.frame["file_name"].tolist() == ["000001.jpg", "000000.jpg"]


def test_every_problem_reported_at_once(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20, 30, 40, 50, 60])
    (layout.images_dir / "000003.jpg").unlink()
    (layout.images_dir / "000004.jpg").write_bytes(b"")
    text = (
        "file_name;real_age\n"
        "000000.jpg;10\n"
        "000001.jpg;abc\n"
        "000002.jpg;150\n"
        "000003.jpg;40\n"
        "000004.jpg;50\n"
        "000005.jpg;60\n"
        "000005.jpg;60\n"
    )
    write_labels(layout, b"\xef\xbb\xbf" + text.encode("utf-8"))

    check = check_dataset(layout)

    assert [(problem.fatal, problem.line, problem.file, problem.kind) for problem in check.problems] == [
        (False, None, None, "format"),
        (False, None, None, "format"),
        (False, 3, "000001.jpg", "age"),
        (False, 4, "000002.jpg", "age"),
        (False, 5, "000003.jpg", "missing_photo"),
        (False, 6, "000004.jpg", "bad_photo"),
        (False, 8, "000005.jpg", "duplicate"),
    ]
    assert check.frame["file_name"].tolist() == ["000000.jpg", "000005.jpg"]
    assert check.skipped_lines == [3, 4, 5, 6, 8]


def test_check_never_modifies_input(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, 20, 30])
    truncate(layout.images_dir / "000001.jpg")
    write_labels(layout, b"\xef\xbb\xbffile_name;real_age\r\n000000.jpg;10\r\n000001.jpg;20\r\n000002.jpg;x\r\n")
    before = tree_digest(layout.root)

    check_dataset(layout)
    frame = load_dataset(layout)
    describe_dataset(check_dataset(layout), histogram_path=None)

    assert frame["file_name"].tolist() == ["000000.jpg"]

    assert tree_digest(layout.root) == before


def test_load_dataset_caps_logged_warnings(make_faces: MakeFaces, caplog: pytest.LogCaptureFixture) -> None:
    layout = make_faces(ages=[10] * 16)
    for index in range(1, 16):
        (layout.images_dir / f"{index:06d}.jpg").unlink()

    with caplog.at_level(logging.WARNING, logger="tuner.data_check"):
        frame = load_dataset(layout)

    messages = [record.getMessage() for record in caplog.records]
    assert len(frame) == 1
    assert sum("photo not found" in message for message in messages) == 10
    assert "5 more warnings of the kind 'Missing photos' were not logged." in messages


def test_load_dataset_counts_one_skipped_row(make_faces: MakeFaces, caplog: pytest.LogCaptureFixture) -> None:
    layout = make_faces(ages=[10, 20, 30])
    (layout.images_dir / "000001.jpg").unlink()

    with caplog.at_level(logging.INFO, logger="tuner.data_check"):
        load_dataset(layout)

    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith(f"Loaded 2 photos from {layout.root} (1 row skipped); ") for message in messages)


@pytest.mark.parametrize(("count", "text"), [(0, "0 rows"), (1, "1 row"), (2, "2 rows"), (1024, "1,024 rows")])
def test_count_rows(count: int, text: str) -> None:
    assert count_rows(count) == text


# --------------------------------------------------------------------------
# Split


def names_frame(count: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "file_name": [f"{index:06d}.jpg" for index in range(count)],
            "age": np.arange(count, dtype=np.float32),
            "path": [f"/data/{index:06d}.jpg" for index in range(count)],
        }
    )


def test_split_fraction_is_close(seed: int) -> None:
    split = split_dataset(names_frame(4000), validation_fraction=0.25, seed=seed)

    share = (split["subset"] == "validation").mean()
    # The binomial standard deviation is 0.007 for 4000 rows, so 0.03 is over 4 sigma.
    assert abs(share - 0.25) < 0.03
    assert set(split["subset"]) == {"train", "validation"}


def test_split_stable_when_rows_change(seed: int) -> None:
    frame = names_frame(500)
    split = split_dataset(frame, seed=seed).set_index("file_name")["subset"]

    shuffled = split_dataset(frame.sample(frac=1.0, random_state=seed), seed=seed).set_index("file_name")["subset"]
    grown = split_dataset(names_frame(800), seed=seed).set_index("file_name")["subset"]

    pd.testing.assert_series_equal(shuffled.loc[split.index], split)
    pd.testing.assert_series_equal(grown.loc[split.index], split)


def test_split_depends_on_seed() -> None:
    frame = names_frame(500)

    first = split_dataset(frame, seed=0)["subset"]
    second = split_dataset(frame, seed=1)["subset"]

    assert (first != second).any()


def test_split_keeps_input_unchanged() -> None:
    frame = names_frame(50)

    split = split_dataset(frame)

    assert "subset" not in frame.columns
    assert list(split.columns) == ["file_name", "age", "path", "subset"]


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, math.nan, True, "0.2"])
def test_split_rejects_invalid_fraction(fraction: object) -> None:
    with pytest.raises(DataError, match="Invalid validation fraction"):
        split_dataset(names_frame(10), validation_fraction=fraction)  # type: ignore[arg-type]


def test_split_rejects_empty_subset() -> None:
    with pytest.raises(DataError, match="subset is empty after splitting 1 photos"):
        split_dataset(names_frame(1), validation_fraction=0.5)


def test_save_and_load_split_round_trip(tmp_path: Path) -> None:
    split = split_dataset(names_frame(40))
    split.loc[0, "age"] = np.float32(33.5)
    path = tmp_path / "run" / "split.csv"

    save_split(split, path)
    loaded = load_split(path)

    assert path.read_text(encoding="utf-8").splitlines()[0] == "file_name,age,subset,path"
    assert sorted(entry.name for entry in path.parent.iterdir()) == ["split.csv"]
    assert path.stat().st_mode & 0o777 == 0o644
    pd.testing.assert_frame_equal(loaded, split.loc[:, ["file_name", "age", "subset", "path"]], check_dtype=False)
    assert loaded["age"].dtype == np.float32


def test_save_split_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("old", encoding="utf-8")

    save_split(split_dataset(names_frame(20)), path)

    assert len(load_split(path)) == 20


def test_save_split_rejects_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lacks the columns \\['subset'\\]"):
        save_split(names_frame(5), tmp_path / "split.csv")
    assert list(tmp_path.iterdir()) == []


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Split file not found"):
        load_split(tmp_path / "absent.csv")

    bad_subset = tmp_path / "subset.csv"
    bad_subset.write_text("file_name,age,subset,path\na.jpg,3,test,/a.jpg\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: subset 'test' is not 'train' or 'validation'"):
        load_split(bad_subset)

    bad_age = tmp_path / "age.csv"
    bad_age.write_text("file_name,age,subset,path\na.jpg,x,train,/a.jpg\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: age 'x' is not a number"):
        load_split(bad_age)

    no_path = tmp_path / "columns.csv"
    no_path.write_text("file_name,age,subset\na.jpg,3,train\n", encoding="utf-8")
    with pytest.raises(DataError, match="lacks the columns \\['path'\\]"):
        load_split(no_path)


# --------------------------------------------------------------------------
# tf.data pipeline


def batches(dataset: object) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images.numpy(), ages.numpy()) for images, ages in dataset]  # type: ignore[attr-defined]


def test_make_dataset_shapes_and_dtypes(make_faces: MakeFaces) -> None:
    frame = check_dataset(make_faces(ages=list(range(10, 17)), size=20)).frame

    dataset = make_dataset(frame, image_size=12, batch_size=3, training=False, cache=None)
    result = batches(dataset)

    assert [images.shape for images, _ in result] == [(3, 12, 12, 3), (3, 12, 12, 3), (1, 12, 12, 3)]
    assert all(images.dtype == np.uint8 for images, _ in result)
    assert all(ages.dtype == np.float32 for _, ages in result)
    assert np.concatenate([ages for _, ages in result]).tolist() == list(range(10, 17))
    assert dataset.element_spec[0].shape.as_list() == [None, 12, 12, 3]


def test_make_dataset_keeps_pixel_values(tmp_path: Path) -> None:
    (tmp_path / "final_files").mkdir()
    Image.new("RGB", (30, 20), (200, 100, 50)).save(tmp_path / "final_files" / "a.png")
    (tmp_path / "labels.csv").write_text("file_name,real_age\na.png,30\n", encoding="utf-8")
    frame = check_dataset(DatasetLayout(tmp_path)).frame

    images, _ = batches(make_dataset(frame, image_size=8, batch_size=1, training=False, cache=None))[0]

    assert (images[0] == np.array([200, 100, 50], dtype=np.uint8)).all()


def test_make_dataset_grayscale_becomes_rgb(tmp_path: Path, write_photo: PhotoWriter) -> None:
    (tmp_path / "final_files").mkdir()
    write_photo(tmp_path / "final_files" / "gray.png", size=10, mode="L", format="PNG")
    (tmp_path / "labels.csv").write_text("file_name,real_age\ngray.png,30\n", encoding="utf-8")
    frame = check_dataset(DatasetLayout(tmp_path)).frame

    images, _ = batches(make_dataset(frame, image_size=10, batch_size=1, training=False, cache=None))[0]

    assert images.shape == (1, 10, 10, 3)
    assert (images[..., 0] == images[..., 1]).all()
    assert (images[..., 0] == images[..., 2]).all()
    expected = np.asarray(Image.open(tmp_path / "final_files" / "gray.png"))
    assert (images[0, ..., 0] == expected).all()


def test_make_dataset_disk_cache_names_size(make_faces: MakeFaces, tmp_path: Path) -> None:
    frame = check_dataset(make_faces(ages=[10, 20, 30])).frame
    cache = tmp_path / "cache"

    first = batches(make_dataset(frame, image_size=8, batch_size=2, training=False, cache=cache))
    files_8px = sorted(path.name for path in cache.iterdir())
    batches(make_dataset(frame, image_size=6, batch_size=2, training=False, cache=cache))
    files_6px = sorted(path.name for path in cache.iterdir() if path.name not in files_8px)
    second = batches(make_dataset(frame, image_size=8, batch_size=2, training=False, cache=cache))

    assert files_8px
    assert all(name.startswith("images-8px-") for name in files_8px)
    assert files_6px
    assert all(name.startswith("images-6px-") for name in files_6px)
    for (images_a, ages_a), (images_b, ages_b) in zip(first, second):
        assert (images_a == images_b).all()
        assert (ages_a == ages_b).all()


def test_make_dataset_training_reshuffles(make_faces: MakeFaces, seed: int) -> None:
    ages = list(range(20, 44))
    frame = check_dataset(make_faces(ages=ages, size=8)).frame
    dataset = make_dataset(frame, image_size=8, batch_size=5, training=True, cache="memory", seed=seed)

    epochs = [np.concatenate([batch_ages for _, batch_ages in batches(dataset)]).tolist() for _ in range(3)]

    assert all(sorted(epoch) == ages for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 3
    assert [len(batch_ages) for _, batch_ages in batches(dataset)] == [5, 5, 5, 5, 4]


def test_make_dataset_validation_keeps_order(make_faces: MakeFaces) -> None:
    frame = check_dataset(make_faces(ages=list(range(30, 42)), size=8)).frame
    dataset = make_dataset(frame, image_size=8, batch_size=4, training=False)

    for _ in range(2):
        order = np.concatenate([ages for _, ages in batches(dataset)]).tolist()
        assert order == list(range(30, 42))


def test_make_dataset_rejects_bad_arguments(make_faces: MakeFaces) -> None:
    frame = check_dataset(make_faces(ages=[10])).frame

    with pytest.raises(ValueError, match="image_size"):
        make_dataset(frame, image_size=0, batch_size=1, training=False)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(frame, image_size=8, batch_size=0, training=False)
    with pytest.raises(DataError, match="zero photos"):
        make_dataset(frame.iloc[:0], image_size=8, batch_size=1, training=False)


# --------------------------------------------------------------------------
# Exploratory summary


def test_describe_dataset_counts_age_bands(make_faces: MakeFaces, tmp_path: Path) -> None:
    check = check_dataset(make_faces(ages=[1, 12, 12.5, 13, 17, 18, 30, 64.9, 65, 100]))
    histogram = tmp_path / "plots" / "ages.png"

    text = describe_dataset(check, histogram)

    assert "Usable photos: 10 (0 rows skipped)" in text
    assert "Age (years): min 1, max 100, mean 33.34, median 17.5" in text
    band_lines = text.split("Photos per age band:\n")[1].splitlines()[:8]
    counts = {line.split()[0]: int(line.split()[1]) for line in band_lines}
    assert counts == {
        "0-12": 3,
        "13-17": 2,
        "18-24": 1,
        "25-34": 1,
        "35-44": 0,
        "45-54": 0,
        "55-64": 1,
        "65+": 2,
    }
    assert "Problems: none" in text
    assert f"Age histogram: {histogram}" in text
    assert histogram.read_bytes().startswith(b"\x89PNG")


def test_describe_dataset_lists_problems(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10, "abc", "x", 200, 30, 40, 50, 60, 70, 80])
    (layout.images_dir / "000004.jpg").unlink()

    text = describe_dataset(check_dataset(layout), histogram_path=None)

    assert "Problems: 4 (0 fatal)" in text
    assert "  Invalid ages (3):" in text
    assert "  Missing photos (1):" in text
    assert "Skipped CSV lines: 3, 4, 5, 6" in text
    assert "Age histogram" not in text


def test_describe_dataset_caps_each_group(make_faces: MakeFaces) -> None:
    layout = make_faces(ages=[10] + ["abc"] * 30)

    text = describe_dataset(check_dataset(layout), histogram_path=None)

    assert "  Invalid ages (30):" in text
    assert text.count("is not a number") == 5
    assert "... and 25 more" in text
    assert "Skipped CSV lines: 3, 4, 5" in text
    assert "and 10 more" in text


def test_describe_dataset_without_usable_rows(make_faces: MakeFaces, tmp_path: Path) -> None:
    layout = make_faces()
    write_labels(layout, b"")
    histogram = tmp_path / "ages.png"

    text = describe_dataset(check_dataset(layout), histogram)

    assert "Usable photos: 0" in text
    assert "FATAL: Labels file" in text
    assert "not written, because there are no usable photos" in text
    assert not histogram.exists()


# --------------------------------------------------------------------------
# Real photos


@pytest.mark.real_data
def test_real_faces_pass_check(real_faces: DatasetLayout) -> None:
    check = check_dataset(real_faces)

    assert check.problems == []
    summary = check.summary()
    assert summary["photos"] == 7591
    assert summary["skipped_rows"] == 0
    assert summary["age_min"] == 1.0
    assert summary["age_max"] == 116.0
    assert summary["age_mean"] == 33.3
    assert summary["age_median"] == 29.0
    # The exact mean of the CSV's integer ages, 252,779 / 7,591.
    assert check.frame["age"].astype("float64").mean() == pytest.approx(33.299828744565936, abs=1e-9)


@pytest.mark.real_data
def test_real_faces_make_dataset(real_faces: DatasetLayout) -> None:
    frame = check_dataset(real_faces, verify_images=False).frame.iloc[:16]

    images, ages = batches(make_dataset(frame, image_size=224, batch_size=8, training=False, cache=None))[0]

    assert images.shape == (8, 224, 224, 3)
    assert images.dtype == np.uint8
    assert ages.tolist() == frame["age"].iloc[:8].tolist()
