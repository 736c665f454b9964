"""Reading the list files of datasets (text lists, tab-separated tables, JSON, MATLAB files)
so that a malformed entry is an error naming the file, the line and what was expected.

Every reader here raises :class:`~lit_robust.data.images.DataFileError`, which ``lit-robust``
shows as one line (``lit-robust: error: <file>, line 7: expected ..., got '...'``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.io

from lit_robust.data.images import DataFileError

Key = TypeVar("Key")
"""The type of a listing's keys (class names, class ids, file names)."""


def entry_error(path: Path, expected: str, entry: Any, where: str | int | None = None
                ) -> DataFileError:
    """The error for one bad entry of a list file.

    Args:
        path: the file.
        expected: what the entry should have been, in words.
        entry: the entry as found (a line's text, a JSON value).
        where: the 1-based line number (``int``) or another position (``"train[3]"``).
    """
    position = f", line {where}" if isinstance(where, int) else f", {where}" if where else ""
    return DataFileError(f"{path}{position}: expected {expected}, got {entry!r}; fix the entry "
                         "or replace the file with the dataset's original")


def few(values: Iterable[Any], limit: int = 8) -> str:
    """``"1, 2, 6"``, or the first ``limit`` values and how many more."""
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"


def numbered_lines(path: Path, comment: str | None = None) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-empty lines of a text file (1-based),
    without the lines starting with ``comment``.

    Raises:
        DataFileError: the file is not UTF-8 text.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path} is not a text file ({error}); replace it with the "
                            "dataset's original") from error
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not (comment and line.startswith(comment))]


def split_fields(path: Path, number: int, line: str, count: int, expected: str,
                 separator: str | None = None) -> list[str]:
    """The first ``count`` fields of ``line`` (the last one keeps the rest of the line when
    ``separator`` is given), or an error saying the line should be ``expected``."""
    parts = line.split(separator, count - 1) if separator else line.split()
    if len(parts) < count or any(not part.strip() for part in parts[:count]):
        raise entry_error(path, expected, line, number)
    return [part.strip() for part in parts[:count]]


def integer(path: Path, text: str, expected: str, entry: Any, where: str | int | None) -> int:
    """``int(text)``, or an error naming the entry."""
    try:
        return int(text)
    except ValueError:
        raise entry_error(path, expected, entry, where) from None


def lookup(mapping: Mapping[Key, int], key: Key, path: Path, expected: str, entry: Any,
           where: str | int | None) -> int:
    """``mapping[key]``, or an error naming the entry and what it should have named."""
    try:
        return mapping[key]
    except KeyError:
        raise entry_error(path, expected, entry, where) from None


def table_rows(path: Path, columns: tuple[str, ...], delimiter: str = "\t"
               ) -> list[tuple[int, str, dict[str, str]]]:
    """``(line number, line, row)`` of a delimited file (tab-separated by default) whose first
    line names its columns; values are stripped.

    Raises:
        DataFileError: a column of ``columns`` is missing from the header, or a row lacks a
            value for one.
    """
    numbered = numbered_lines(path)
    if not numbered:
        raise entry_error(path, f"a header naming the columns {', '.join(columns)}", "", 1)
    reader = csv.DictReader([line for _, line in numbered], delimiter=delimiter)
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [column for column in columns if column not in header]
    if missing:
        raise entry_error(path, f"a {delimiter!r}-separated header with the columns "
                          f"{', '.join(columns)} ({', '.join(missing)} missing)", numbered[0][1],
                          numbered[0][0])
    rows = []
    for (number, line), row in zip(numbered[1:], reader, strict=True):
        row = {key.strip(): (value or "").strip() for key, value in row.items() if key}
        if any(not row.get(column) for column in columns):
            raise entry_error(path, f"a value for each of {', '.join(columns)}", line, number)
        rows.append((number, line, row))
    return rows


def load_json(path: Path) -> Any:
    """The JSON document in ``path``.

    Raises:
        DataFileError: naming the line and column where it stops being JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f", line {error.lineno}, column {error.colno}" if isinstance(
            error, json.JSONDecodeError) else ""
        raise DataFileError(f"{path}{where}: not valid JSON ({error}); replace it with the "
                            "dataset's original") from error


def load_mat(path: Path, keys: tuple[str, ...], expected: str) -> dict[str, np.ndarray]:
    """The variables ``keys`` of a MATLAB file.

    Raises:
        DataFileError: the file is not a MATLAB file or lacks one of ``keys``.
    """
    try:
        content = scipy.io.loadmat(str(path), squeeze_me=True)
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise DataFileError(f"{path} is not a readable MATLAB file ({error}); expected "
                            f"{expected}") from error
    missing = [key for key in keys if key not in content]
    if missing:
        found = sorted(key for key in content if not key.startswith("__"))
        raise DataFileError(f"{path} has no variable {', '.join(missing)} (it holds "
                            f"{few(found) or 'none'}); expected {expected}")
    return {key: content[key] for key in keys}
