"""Read a dataset's labels CSV into rows, or report exactly what is wrong with it.

Fatal: a missing, empty or non-UTF-8 file, a record that the csv module
cannot parse or whose field count differs from the header's, and a missing
or repeated file or age column. A missing column comes with the closest
header name as a suggestion. Read with a warning: a UTF-8 byte order mark,
and a ';', tab or '|' delimiter, detected from the first line.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuner.dataset_layout import DatasetLayout, Problem, list_entries

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}


def count_fields(count: int) -> str:
    """Return "1 field" or "N fields"."""
    return "1 field" if count == 1 else f"{count} fields"


@dataclass
class LabelTable:
    """The parsed rows of a labels CSV, with the positions of the file and age columns."""

    name: str
    delimiter: str
    file_index: int
    age_index: int
    rows: list[tuple[int, list[str]]]


def read_labels(layout: DatasetLayout, problems: list[Problem]) -> LabelTable | None:
    """Read and parse the labels CSV, or add fatal problems and return None."""
    path = layout.labels_path
    name = path.name

    if not path.exists():
        if layout.root.is_dir() or Path(layout.labels).is_absolute():
            message = f"Labels file not found: {path}. Pass --labels FILE with the CSV of file names and ages."
            candidates = list_entries(path.parent, lambda entry: entry.suffix.lower() in {".csv", ".tsv", ".txt"})
            if candidates:
                message += f" Files that may be it: {candidates}."
            problems.append(Problem(message, fatal=True, kind="labels"))
        return None
    if path.is_dir():
        problems.append(Problem(f"The labels path {path} is a folder, not a CSV file.", fatal=True, kind="labels"))
        return None
    try:
        raw = path.read_bytes()
    except OSError as error:
        problems.append(Problem(f"Cannot read the labels file {path}: {error}.", fatal=True, kind="labels"))
        return None

    if not raw.strip():
        problems.append(
            Problem(
                f"Labels file {path} is empty ({len(raw)} bytes). It needs the header line "
                f"'{layout.file_column},{layout.age_column}' and one row per photo.",
                fatal=True,
                kind="labels",
            )
        )
        return None

    if raw.startswith(codecs.BOM_UTF8):
        problems.append(
            Problem(f"{name} starts with a UTF-8 byte order mark (BOM). It was read without it.", False, kind="format")
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        problems.append(
            Problem(
                f"{name} is not valid UTF-8: byte 0x{raw[error.start]:02x} on line {line} cannot be decoded. "
                "Save the file as UTF-8.",
                fatal=True,
                line=line,
                kind="labels",
            )
        )
        return None

    delimiter = _detect_delimiter(text)
    if delimiter != ",":
        problems.append(
            Problem(
                f"{name} uses {DELIMITER_NAMES[delimiter]} as the delimiter instead of ','. "
                "It was read with that delimiter.",
                fatal=False,
                kind="format",
            )
        )

    records = _parse_csv(text, delimiter, name, problems)
    if records is None:
        return None
    if not records:
        problems.append(Problem(f"Labels file {path} has no lines with content.", fatal=True, kind="labels"))
        return None

    header_line, header_fields = records[0]
    header = [cell.strip() for cell in header_fields]
    data = records[1:]
    if not data:
        problems.append(
            Problem(
                f"Labels file {path} has a header but no data rows. Add one row per photo: file name and age.",
                fatal=True,
                line=header_line,
                kind="labels",
            )
        )

    file_index = _find_column(header, header_line, layout.file_column, "--file-column", layout, problems)
    age_index = _find_column(header, header_line, layout.age_column, "--age-column", layout, problems)

    rows: list[tuple[int, list[str]]] = []
    for line, fields in data:
        if len(fields) != len(header):
            problems.append(
                Problem(
                    f"{name} line {line} cannot be parsed: it has {count_fields(len(fields))} but the header has "
                    f"{len(header)}. Check the delimiter and the quoting on that line.",
                    fatal=True,
                    line=line,
                    kind="format",
                )
            )
            continue
        rows.append((line, fields))

    if file_index is None or age_index is None or not data:
        return None
    return LabelTable(name=name, delimiter=delimiter, file_index=file_index, age_index=age_index, rows=rows)


def _detect_delimiter(text: str) -> str:
    """Return the candidate delimiter found most often in the first non-blank line, or ',' if none is."""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    counts = {delimiter: first_line.count(delimiter) for delimiter in DELIMITERS}
    # max() keeps the first of equal counts, so ',' wins ties.
    best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] > 0 else ","


def _parse_csv(text: str, delimiter: str, name: str, problems: list[Problem]) -> list[tuple[int, list[str]]] | None:
    """Return the non-blank CSV records with their starting line numbers, or None on a parse error."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    previous_end = 0
    try:
        for fields in reader:
            # A quoted field can span lines, so a record starts after the previous one ends.
            start = previous_end + 1
            previous_end = reader.line_num
            if fields:
                records.append((start, fields))
    except csv.Error as error:
        # Report where the broken record starts: an unclosed quote makes the
        # reader fail only at the end of the file.
        line = previous_end + 1
        problems.append(
            Problem(
                f"{name} line {line} cannot be parsed as CSV: {error}. Check the quoting on that line.",
                fatal=True,
                line=line,
                kind="format",
            )
        )
        return None
    return records


def _find_column(
    header: list[str], header_line: int, expected: str, option: str, layout: DatasetLayout, problems: list[Problem]
) -> int | None:
    """Return the index of column `expected`, or add a fatal problem with the closest names and return None."""
    name = layout.labels_path.name
    matches = [index for index, column in enumerate(header) if column == expected]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        problems.append(
            Problem(
                f"Column '{expected}' appears {len(matches)} times in the header of {name}. "
                "Rename or remove the extra columns.",
                fatal=True,
                line=header_line,
                kind="columns",
            )
        )
        return None

    found = ", ".join(f"'{column}'" for column in header)
    message = f"Column '{expected}' not found in {name}. Found columns: {found}."
    # Do not suggest the column that already serves as the other column.
    other_columns = {layout.file_column, layout.age_column} - {expected}
    candidates = [column for column in header if column not in other_columns]
    suggestion = _closest_column(expected, candidates)
    if suggestion is not None:
        message += f" Did you mean '{suggestion}'? Pass {option} {_quote_argument(suggestion)}."
    elif _looks_like_data(header):
        message += (
            f" The first line looks like data, not a header. "
            f"Add the line '{layout.file_column},{layout.age_column}' at the top."
        )
    else:
        message += f" Pass {option} NAME with the name of that column."
    if len(header) == 1:
        message += " The header has a single column, so the delimiter may be other than ',', ';', tab or '|'."
    problems.append(Problem(message, fatal=True, line=header_line, kind="columns"))
    return None


def _closest_column(expected: str, candidates: Sequence[str]) -> str | None:
    """Return the candidate closest to `expected`, ignoring case, or None if none is close."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    # 0.5 accepts 'age' for 'real_age' (ratio 0.55) but rejects unrelated names.
    close = difflib.get_close_matches(expected.lower(), list(by_lower), n=1, cutoff=0.5)
    return by_lower[close[0]] if close else None


def _looks_like_data(header: list[str]) -> bool:
    image_suffixes = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
    return any(cell.lower().endswith(image_suffixes) or _is_number(cell) for cell in header)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _quote_argument(value: str) -> str:
    return value if re.fullmatch(r"[\w.-]+", value) else repr(value)
