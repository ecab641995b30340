"""Read captured inference requests: SageMaker data-capture JSON Lines or plain ``{"text": ...}`` lines.

SageMaker endpoint data capture writes one JSON object per request, e.g.::

    {"captureData": {"endpointInput": {"observedContentType": "application/json",
                                       "mode": "INPUT", "data": "[\\"a sentence\\", \\"another\\"]",
                                       "encoding": "JSON"}, ...},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2022-01-01T00:00:00Z"}, ...}

``data`` holds the request body as text (``encoding`` JSON or CSV) or base64
(``BASE64``). A body may be one string, a list of strings (the seed sends
lists), or an object with ``text`` / ``inputs`` / ``sentence`` /
``sentences`` / ``instances``. Plain lines ``{"text": "..."}`` are read too.

A capture folder is read file by file in sorted path order: SageMaker's
``<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl`` layout makes that time
order. Lines are read by :func:`sagelab.readers.jsonl.iter_json_lines`. Bad input
never stops the read: a line that is not UTF-8 or not JSON (or nested deeper than
the parser allows), a blank line, a request of the wrong shape or without text,
or an empty file is recorded as a :class:`~sagelab.readers.lines.BadLine` (file,
line number, reason) and skipped, so every good record is still scored and the
problems are listed in ``statistics.json``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sagelab.readers.jsonl import decode_json, iter_json_lines
from sagelab.readers.lines import BadLine

CAPTURE_SUFFIXES = (".jsonl", ".json", ".jsonlines")
TEXT_KEYS = ("text", "inputs", "sentence", "sentences", "instances", "texts")


@dataclass(frozen=True)
class Record:
    """One text to score, with where it came from."""

    text: str
    file: str
    line: int  # 1-based line number in ``file``
    item: int = 0  # position inside the request body when it held a list
    event_id: str | None = None
    inference_time: str | None = None


@dataclass
class CaptureData:
    records: list[Record] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    lines_read: int = 0

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]


class CaptureLineError(ValueError):
    """A line that is readable JSON but carries no usable text."""


def capture_files(path: str | Path) -> list[Path]:
    """The capture files under ``path`` (a file, or a folder searched recursively), in sorted order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"capture path '{path}' does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CAPTURE_SUFFIXES)


def texts_from_body(body: Any) -> list[str]:
    """Texts in a decoded request body: a string, a list of strings, or an object with a text key.

    Walked with an explicit stack, so a body nested as deep as the JSON parser allows cannot exhaust Python's.
    """
    texts: list[str] = []
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            key = next((k for k in TEXT_KEYS if k in item), None)
            if key is None:
                raise CaptureLineError(f"request object has none of the keys {', '.join(TEXT_KEYS)}")
            stack.append(item[key])
        else:
            raise CaptureLineError(f"request body is a {type(item).__name__}, not text")
    return texts


def _decode_capture_input(endpoint_input: dict[str, Any]) -> list[str]:
    if "data" not in endpoint_input:
        raise CaptureLineError("captureData.endpointInput has no 'data'")
    data = endpoint_input["data"]
    encoding = str(endpoint_input.get("encoding", "JSON")).upper()
    content_type = str(endpoint_input.get("observedContentType", "application/json")).lower()
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, TypeError) as err:
            raise CaptureLineError(f"endpointInput.data is not valid base64 UTF-8 ({err})") from err
    if not isinstance(data, str):
        return texts_from_body(data)
    if "csv" in content_type or encoding == "CSV" or "text/plain" in content_type:
        return [row for row in data.splitlines() if row.strip()]
    try:
        body = decode_json(data)
    except ValueError as err:
        reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
        raise CaptureLineError(f"endpointInput.data is not JSON ({reason})") from err
    return texts_from_body(body)


def parse_line(obj: Any) -> tuple[list[str], str | None, str | None]:
    """Texts, event id and inference time of one decoded JSON line (capture shape or plain)."""
    if isinstance(obj, dict) and "captureData" in obj:
        capture = obj["captureData"]
        if not isinstance(capture, dict) or not isinstance(capture.get("endpointInput"), dict):
            raise CaptureLineError("captureData has no endpointInput object")
        meta = obj.get("eventMetadata") or {}
        if not isinstance(meta, dict):
            raise CaptureLineError(f"eventMetadata is a {type(meta).__name__}, not an object")
        texts = _decode_capture_input(capture["endpointInput"])
        return texts, meta.get("eventId"), meta.get("inferenceTime")
    return texts_from_body(obj), None, None


def read_lines(path: Path, result: CaptureData) -> None:
    """Append the records and bad lines of one capture file to ``result``."""
    name = str(path)
    result.files.append(name)
    first_bad, last = len(result.bad_lines), 0
    for number, obj in iter_json_lines(path, result.bad_lines, blank="blank line"):
        last = number
        try:
            texts, event_id, when = parse_line(obj)
        except CaptureLineError as err:
            result.bad_lines.append(BadLine(name, number, str(err)))
            continue
        good = [t for t in texts if isinstance(t, str) and t.strip()]
        if not good:
            result.bad_lines.append(BadLine(name, number, "no text in the request"))
            continue
        for item, t in enumerate(good):
            result.records.append(Record(t, name, number, item, event_id, when))
    bad = result.bad_lines[first_bad:]
    if not last and all(b.reason == "blank line" for b in bad):  # nothing but white space
        del result.bad_lines[first_bad:]
        result.bad_lines.append(BadLine(name, 0, "empty file"))
        return
    result.lines_read += max([last, *(b.line for b in bad)])  # every line is a value or a bad line


def read_capture(paths: str | Path | Iterable[str | Path]) -> CaptureData:
    """Read one capture file, a folder of them, or a list of either, in order."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    result = CaptureData()
    for path in paths:
        files = capture_files(path)
        if not files:
            result.bad_lines.append(BadLine(str(path), 0, f"no {'/'.join(CAPTURE_SUFFIXES)} files in folder"))
        for file in files:
            read_lines(file, result)
    return result


def capture_line(texts: str | list[str], event_id: str | None = None, inference_time: str | None = None) -> str:
    """One SageMaker data-capture JSON line for a request carrying ``texts`` (for tests and demos)."""
    body = json.dumps(texts)
    obj = {
        "captureData": {
            "endpointInput": {
                "observedContentType": "application/json",
                "mode": "INPUT",
                "data": body,
                "encoding": "JSON",
            }
        },
        "eventMetadata": {"eventId": event_id or "", "inferenceTime": inference_time or ""},
        "eventVersion": "0",
    }
    return json.dumps(obj)
