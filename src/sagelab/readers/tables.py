"""Delimited tables (``.tsv`` / ``.csv``), read with a real CSV reader and the line of every record.

Review texts are quoted and span lines, so a record's line number is the physical line where it ends.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterator

from sagelab.config import ConfigError
from sagelab.readers.capture import CaptureData, Record
from sagelab.readers.lines import BadInput, BadLine, has_bad_bytes, read_utf8

TABLE_SUFFIXES = (".tsv", ".csv")
Row = tuple[int, dict[str, str]]  # (line, column -> cell)


def csv_records(path: Path, lenient: bool = False, delimiter: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each non-blank record; the delimiter is a tab for ``.tsv``, else a comma.

    The text is read by :func:`~sagelab.readers.lines.read_utf8` (``lenient`` as there); a quoting error
    stops the read with its line.
    """
    # review texts and graph text properties run past csv's 128 KB default; the tokenizer truncates them
    csv.field_size_limit(1 << 30)
    delimiter = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    reader = csv.reader(io.StringIO(read_utf8(path, lenient), newline=""), delimiter=delimiter)
    try:
        for fields in reader:
            if fields:
                yield reader.line_num, fields
    except csv.Error as err:
        raise BadInput(BadLine(str(path), reader.line_num, f"not {path.suffix.lstrip('.').upper()}: {err}")) from None


def read_rows(path: Path, bad: list[BadLine], lenient: bool = False) -> tuple[list[str], list[Row]]:
    """The header and the records of a table with a header row (none for an empty file).

    A record with another number of fields than the header, or (``lenient``) bytes that are not UTF-8, is
    listed in ``bad`` and skipped; without ``lenient`` such bytes stop the read, naming the line.
    """
    records = csv_records(path, lenient)
    first = next(records, None)
    if first is None:
        return [], []
    header = [name.strip() for name in first[1]]
    return header, list(_checked_rows(path, header, records, bad, lenient))


def iter_rows(path: Path, bad: list[BadLine]) -> Iterator[Row]:
    """The records of a table with a header row, one at a time: the file is read as a stream, so a table of any
    size takes constant memory (batch transform). Bad rows go to ``bad`` as :func:`read_rows` with ``lenient``
    lists them."""
    csv.field_size_limit(1 << 30)
    # utf-8-sig drops a byte-order mark; surrogateescape keeps a byte that is not UTF-8 for has_bad_bytes
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        records = ((reader.line_num, fields) for fields in reader if fields)
        try:
            first = next(records, None)
            if first is not None:
                yield from _checked_rows(path, [name.strip() for name in first[1]], records, bad, lenient=True)
        except csv.Error as err:
            raise BadInput(BadLine(str(path), reader.line_num,
                                   f"not {path.suffix.lstrip('.').upper()}: {err}")) from None


def _checked_rows(path: Path, header: list[str], records: Iterator[tuple[int, list[str]]], bad: list[BadLine],
                  lenient: bool) -> Iterator[Row]:
    for line, fields in records:
        if lenient and has_bad_bytes(*fields):
            bad.append(BadLine(str(path), line, "not UTF-8"))
        elif len(fields) != len(header):
            bad.append(BadLine(str(path), line, f"{len(fields)} fields, the header has {len(header)}"))
        else:
            yield line, dict(zip(header, fields))


def read_table(path: Path, text_column: str, key: str = "text_column") -> CaptureData:
    """The non-empty ``text_column`` cells of a table; other records are listed as bad lines.

    A header without ``text_column`` is a :class:`ConfigError` on ``key`` (the config key naming the column);
    bytes that are not UTF-8 stop the read, naming file and line.
    """
    out = CaptureData(files=[str(path)])
    header, rows = read_rows(path, out.bad_lines)
    if not header:
        out.bad_lines.append(BadLine(str(path), 0, "empty file"))
        return out
    if text_column not in header:
        raise ConfigError(key, f"'{text_column}' is not a column of {path} (columns: {', '.join(header)}).")
    for line, row in rows:
        text = row[text_column].strip()
        if text:
            out.records.append(Record(text, str(path), line))
        else:
            out.bad_lines.append(BadLine(str(path), line, f"empty '{text_column}'"))
    out.lines_read = len(rows) + len(out.bad_lines)
    out.bad_lines.sort(key=lambda b: b.line)
    return out
