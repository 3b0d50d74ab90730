"""Bulk registration bodies: JSON entries or CSV rows, turned into device documents.

A CSV file has a header row; ``id`` is required and every other column is a field of the
device (``profile``, ``host``, ``port``, ``unit``, ``endpoint``...). ``labels`` holds
``key=value`` pairs separated by ``;``. An empty cell leaves the field out (its default).
Values are strings here; the device model converts them (``"502"`` → 502) and names the bad
ones, by line of the file.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from gateway.errors import ConfigError, ConfigProblem

__all__ = ["CSV_MEDIA_TYPE", "parse_csv"]

CSV_MEDIA_TYPE = "text/csv"


def parse_csv(text: str) -> tuple[list[tuple[str, dict[str, Any]]], list[ConfigProblem]]:
    """(where, document) per data row, ``where`` naming the row by its line in the file; and
    the problems of rows that could not be read (left out of the rows). A file that is not
    CSV with an ``id`` column is refused whole."""
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True, strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ConfigError([ConfigProblem("line 1", f"not CSV: {exc}")]) from None
    if not header:
        raise ConfigError([ConfigProblem("body", "empty: a header row (id, profile, ...) first")])
    columns = [name.strip() for name in header]
    problems = [
        ConfigProblem(f"line 1, column {i + 1}", f"duplicate column {name!r}")
        for i, name in enumerate(columns)
        if name in columns[:i]
    ]
    if "id" not in columns:
        problems.append(ConfigProblem("line 1", f"no 'id' column (columns: {', '.join(columns)})"))
    if problems:
        raise ConfigError(problems)
    reader.fieldnames = columns
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:
                problems.append(ConfigProblem(where, f"more cells than the {len(columns)} columns"))
                continue
            document: dict[str, Any] = {k: v.strip() for k, v in row.items() if v and v.strip()}
            if not document:
                continue  # a blank line
            if "labels" in document:
                labels, bad = _labels(document["labels"])
                document["labels"] = labels
                if bad:
                    problems += [ConfigProblem(f"{where}.labels", message) for message in bad]
                    continue
            rows.append((where, document))
    except csv.Error as exc:
        raise ConfigError([ConfigProblem(f"line {reader.line_num}", f"not CSV: {exc}")]) from None
    if not rows and not problems:
        raise ConfigError([ConfigProblem("body", "no device rows after the header")])
    return rows, problems


def _labels(cell: str) -> tuple[dict[str, str], list[str]]:
    labels: dict[str, str] = {}
    bad: list[str] = []
    for pair in filter(None, (part.strip() for part in cell.split(";"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            bad.append(f"{pair!r}: expected key=value, pairs separated by ';'")
        else:
            labels[key.strip()] = value.strip()
    return labels, bad
