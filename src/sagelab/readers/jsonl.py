"""JSON Lines (one value a line) and JSON-array files, read value by value with their line numbers.

A line that is not UTF-8, not JSON, or nested deeper than Python's parser allows becomes a :class:`BadLine`
and the read goes on; what a record must contain is the caller's business (it adds its own BadLines).
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any, Iterator

from sagelab.readers.lines import BadInput, BadLine, not_utf8, read_utf8


def decode_json(text: str) -> Any:
    """``json.loads`` whose failures are all ``ValueError`` (a 100,000-deep array raises RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def iter_json_lines(path: Path, bad: list[BadLine], blank: str | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON Lines file; bad lines go to ``bad``.

    A blank line is skipped, or with ``blank`` given, a BadLine with that reason (capture counts them).
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad.append(BadLine(str(path), number, not_utf8(raw, err.start)))
                continue
            if not line.strip():
                if blank:
                    bad.append(BadLine(str(path), number, blank))
                continue
            try:
                yield number, decode_json(line)
            except ValueError as err:
                reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
                bad.append(BadLine(str(path), number, f"not JSON: {reason}"))


def iter_json_array(path: Path, bad: list[BadLine]) -> Iterator[tuple[int, Any]]:
    """(line number, element) of a file holding one top-level JSON array; an unreadable file is one BadLine."""
    try:
        text = read_utf8(path)
        items = decode_json(text)
    except BadInput as err:
        bad.append(err.bad)
        return
    except ValueError as err:
        line = err.lineno if isinstance(err, json.JSONDecodeError) else 0
        bad.append(BadLine(str(path), line, f"not JSON: {getattr(err, 'msg', err)}"))
        return
    if not isinstance(items, list):
        bad.append(BadLine(str(path), 1, "a .json input holds one array of records"))
        return
    # line numbers of the elements: where each top-level element starts
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    for item in items:
        while text[pos] in " \t\r\n,":
            pos += 1
        _, end = decoder.raw_decode(text, pos)
        yield text.count("\n", 0, pos) + 1, item
        pos = end


def read_json_records(path: Path, bad: list[BadLine]) -> Iterator[tuple[int, Any]]:
    """A ``.json`` file whose content starts with ``[`` as an array, anything else as JSON Lines."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        with open(path, "rb") as handle:
            head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"["):
            yield from iter_json_array(path, bad)
            return
    yield from iter_json_lines(path, bad)
