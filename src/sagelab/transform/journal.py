"""Where a batch transform writes, and how a killed one resumes without duplicating or losing a line.

Three files side by side: ``predict.output`` (one JSON line per answered record), ``<output>.skipped.jsonl``
(one ``{file, line, reason}`` per skipped input line) and ``<output>.state.json``. Each window is committed in
this order: answers appended and fsynced, skipped lines appended and fsynced, then the state written atomically
(:func:`~sagelab.safe_io.atomic_write`) with the input's identity, the items consumed, the counts and both
files' byte lengths. A kill anywhere leaves a state that describes a prefix of both files; a run of the same
command truncates them to that prefix and reads on from the item after it. A finished run, a changed input or
``predict.resume=false`` starts fresh, saying why in one line.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Iterable

from sagelab.readers import BadLine
from sagelab.safe_io import atomic_write

STATE_VERSION = 1


@dataclass
class Progress:
    """What the state file records after each commit."""

    identity: dict[str, Any]
    consumed: int = 0      # input items (good and bad lines) done
    records: int = 0
    skipped: int = 0
    output_bytes: int = 0
    skipped_bytes: int = 0
    finished: bool = False
    version: int = STATE_VERSION


def side_paths(output: Path) -> tuple[Path, Path]:
    """(skipped list, state file) of an output file."""
    return output.with_name(f"{output.stem}.skipped.jsonl"), output.with_name(f"{output.name}.state.json")


def start(output: Path, identity: dict[str, Any], resume: bool) -> tuple[Progress, str | None]:
    """Where this run starts: the committed progress of an earlier run of the same command, or nothing -- with
    the one line to print about it (None for a first run)."""
    skipped_path, state_path = side_paths(output)
    fresh = Progress(identity)
    if not state_path.exists():
        return fresh, None
    why = _why_fresh(state_path, identity, resume, output, skipped_path)
    if isinstance(why, str):
        return fresh, f"{why}; starting {output} afresh"
    return why, (f"resuming {output}: {why.consumed} input line(s) done in an earlier run ({why.records} answered, "
                 f"{why.skipped} skipped)")


def _why_fresh(state_path: Path, identity: dict[str, Any], resume: bool, output: Path,
               skipped_path: Path) -> Progress | str:
    """The progress to resume, or why there is none."""
    if not resume:
        return "predict.resume=false"
    try:
        saved = Progress(**json.loads(state_path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        return f"{state_path} cannot be read ({type(err).__name__})"
    if saved.version != STATE_VERSION:
        return f"{state_path} is from another sagelab version"
    if saved.finished:
        return f"the earlier run of this command finished ({saved.records} answered)"
    changed = [key for key in identity if saved.identity.get(key) != identity[key]]
    if changed:
        return f"{' and '.join(changed)} changed since the earlier run"
    for path, length in ((output, saved.output_bytes), (skipped_path, saved.skipped_bytes)):
        if (path.stat().st_size if path.exists() else 0) < length:
            return f"{path} is shorter than the earlier run committed"
    return saved


class Journal:
    """The open output, skipped list and state of one run; :meth:`commit` makes a window durable."""

    def __init__(self, output: Path, progress: Progress) -> None:
        self.output, self.progress = output, progress
        self.skipped_path, self.state_path = side_paths(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        self._out = _open_at(output, progress.output_bytes)
        self._skipped = _open_at(self.skipped_path, progress.skipped_bytes)

    def commit(self, lines: str, records: int, bad: Iterable[BadLine], consumed: int) -> None:
        """Append a window's answers (``records`` lines) and skipped lines, then record that they are done."""
        bad_text = "".join(json.dumps(b.as_dict()) + "\n" for b in bad)
        p = self.progress
        p.output_bytes = _append(self._out, lines)
        p.skipped_bytes = _append(self._skipped, bad_text)
        p.records += records
        p.skipped += bad_text.count("\n")
        p.consumed += consumed
        self.save()

    def finish(self) -> None:
        self.progress.finished = True
        self.save()

    def save(self) -> None:
        data = json.dumps(asdict(self.progress), indent=1).encode()
        atomic_write(self.state_path, lambda handle: handle.write(data))

    def close(self) -> None:
        self._out.close()
        self._skipped.close()

    def first_skipped(self, limit: int) -> list[BadLine]:
        """The first ``limit`` skipped lines of the whole run (earlier sessions included), read back from disk."""
        found = []
        with open(self.skipped_path, encoding="utf-8") as handle:
            for line, _ in zip(handle, range(limit)):
                found.append(BadLine(**json.loads(line)))
        return found


def _open_at(path: Path, length: int) -> IO[bytes]:
    """``path`` opened for appending after its first ``length`` bytes (a fresh run: emptied)."""
    handle = open(path, "ab")
    handle.truncate(length)  # what a killed run wrote after its last commit
    handle.seek(length)  # so tell() is the committed length until the next write
    return handle


def _append(handle: IO[bytes], text: str) -> int:
    if text:
        handle.write(text.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    return handle.tell()


def say(message: str | None) -> None:
    if message:
        print(f"sagelab: {message}.", file=sys.stderr)

