"""What a batch transform reads: a file, or a folder of files in sorted path order, one *item* at a time.

An item is what one input line gives -- a JSON Lines value, a table row (a record of strings), a line of plain
text, or one element of a JSON array -- or the :class:`BadLine` that says why that line cannot be used. Items
come in input order with bad lines in their place, so the count of items consumed is a position: a resumed run
skips exactly that many and goes on. Everything but a JSON array file (the small-input case, read whole) is
read as a stream, so an input of any size takes constant memory.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sagelab.readers import BadLine, read_json_records
from sagelab.readers.lines import not_utf8
from sagelab.readers.tables import TABLE_SUFFIXES, iter_rows

JSON_SUFFIXES = (".jsonl", ".jsonlines", ".ndjson", ".json", ".manifest")
TEXT_SUFFIXES = (".txt",)
SUFFIXES = (*JSON_SUFFIXES, *TABLE_SUFFIXES, *TEXT_SUFFIXES)

Reader = Callable[[Path, "list[BadLine]"], Iterator["tuple[int, Any]"]]  # (path, bad lines) -> (line, value)


@dataclass(frozen=True)
class Item:
    """One input line: the value ``Handler.parse`` gets, or (``bad`` set) why it is skipped."""

    file: str
    line: int
    value: Any = None
    bad: str | None = None


def input_files(path: Path) -> tuple[list[Path], list[BadLine]]:
    """A file as it is (any suffix but a table's or ``.txt`` is JSON Lines); a folder's files with a known suffix,
    searched recursively in sorted path order, and its other files listed as skipped (hidden ones ignored)."""
    if not path.is_dir():
        return [path], []
    files, other = [], []
    for found in sorted(path.rglob("*")):
        if found.is_file() and not any(part.startswith(".") for part in found.relative_to(path).parts):
            (files if found.suffix.lower() in SUFFIXES else other).append(found)
    return files, [BadLine(str(p), 0, f"not an input file (reads {', '.join(SUFFIXES)})") for p in other]


def identity(files: Iterable[Path]) -> list[list[Any]]:
    """What a resumed run checks the input against: each file's absolute path, size and modification time."""
    return [[str(p.resolve()), (stat := p.stat()).st_size, stat.st_mtime_ns] for p in files]


def read_items(files: Iterable[Path], skipped_files: Iterable[BadLine] = ()) -> Iterator[Item]:
    """Every item of ``files`` in input order; ``skipped_files`` (a folder's other files) come first."""
    for bad in skipped_files:
        yield Item(bad.file, bad.line, bad=bad.reason)
    for path in files:
        yield from file_items(path, reader_for(path))


def reader_for(path: Path) -> Reader:
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return iter_rows
    if suffix in TEXT_SUFFIXES:
        return text_lines
    return read_json_records


def file_items(path: Path, reader: Reader) -> Iterator[Item]:
    """The reader's values as items, with the bad lines it reports put back in their place."""
    bad: list[BadLine] = []
    for line, value in reader(path, bad):
        yield from _drain(bad)  # a reader lists a bad line before it yields the next value
        yield Item(str(path), line, value)
    yield from _drain(bad)


def _drain(bad: list[BadLine]) -> Iterator[Item]:
    for problem in bad:
        yield Item(problem.file, problem.line, bad=problem.reason)
    bad.clear()


def text_lines(path: Path, bad: list[BadLine]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line of a plain-text file, without its line break; a line that is
    not UTF-8 goes to ``bad``."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                bad.append(BadLine(str(path), number, not_utf8(raw, err.start)))
                continue
            if text.strip():
                yield number, text
