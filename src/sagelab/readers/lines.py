"""Where input goes wrong: :class:`BadLine` (file, line, reason), the :class:`BadInput` error that carries one,
and file text read as UTF-8 with the line of any byte that is not.

A reader whose format promises skipping (prediction inputs, capture) lists BadLines and goes on; any other
reader raises BadInput, a :class:`~sagelab.config.ConfigError` keyed by the file, which the CLI prints as one
line (``sagelab: bad config: <file>: line N: <reason>``) and exits 2.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from sagelab.config import ConfigError

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a byte that is not UTF-8


@dataclass(frozen=True)
class BadLine:
    """An input line that could not be used; ``line`` is 0 for a whole-file problem (an empty file)."""

    file: str
    line: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class BadInput(ConfigError):
    """A bad line that stops the read: one line at the CLI naming file and line; ``bad`` for readers that skip."""

    def __init__(self, bad: BadLine) -> None:
        super().__init__(bad.file, f"line {bad.line}: {bad.reason}" if bad.line else bad.reason)
        self.bad = bad


def read_utf8(path: str | Path, lenient: bool = False) -> str:
    """The text of ``path`` without a UTF-8 byte-order mark.

    A byte that is not UTF-8 raises :class:`BadInput` naming its line; with ``lenient`` it is kept as a
    surrogate escape instead, so a reader that skips records can find it in the record that holds it
    (:func:`has_bad_bytes`).
    """
    data = Path(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8", errors="surrogateescape" if lenient else "strict")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, line_start) + 1
        raise BadInput(BadLine(str(path), line, not_utf8(data[line_start:], err.start - line_start))) from None


def not_utf8(line: bytes, start: int) -> str:
    """The reason for a line whose byte ``start`` (0-based, within the line) is not UTF-8."""
    return f"not UTF-8 (byte 0x{line[start]:02x} at column {start + 1})"


def has_bad_bytes(*texts: str) -> bool:
    """Whether text read with ``read_utf8(lenient=True)`` holds a byte that was not UTF-8."""
    return any(_ESCAPED_BYTE.search(text) for text in texts)


def print_skipped(bad: Sequence[BadLine], limit: int | None = None, rest: str = "") -> None:
    """``file:line: skipped (reason)`` per skipped record; past ``limit``, one line counting the rest."""
    for problem in bad[:limit]:
        print(f"{problem.file}:{problem.line}: skipped ({problem.reason})")
    if limit is not None and len(bad) > limit:
        print(f"... and {len(bad) - limit} more skipped{rest}")
