"""Delimited tables (``.tsv`` / ``.csv`` with a header row): one text column, read with a real CSV reader.

Review texts are quoted and span lines, so a record's line number is the physical line where it ends.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sagelab.config import ConfigError
from sagelab.readers.capture import CaptureData, Record
from sagelab.readers.jsonl import BadLine

TABLE_SUFFIXES = (".tsv", ".csv")


def read_table(path: Path, text_column: str, key: str = "text_column") -> CaptureData:
    """Rows of a delimited file with a header; empty texts are listed as bad lines (by record number).

    A header without ``text_column`` is a :class:`ConfigError` on ``key`` (the config key naming the column).
    """
    csv.field_size_limit(1 << 30)
    out = CaptureData(files=[str(path)])
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if text_column not in (reader.fieldnames or []):
            raise ConfigError(
                key, f"'{text_column}' is not a column of {path} (columns: {', '.join(reader.fieldnames or [])})."
            )
        for row in reader:
            out.lines_read += 1
            line = reader.line_num  # physical line where this record ends
            text = (row.get(text_column) or "").strip()
            if text:
                out.records.append(Record(text, str(path), line))
            else:
                out.bad_lines.append(BadLine(str(path), line, f"empty '{text_column}'"))
    return out
