"""Endpoint data capture in SageMaker's format, so ``task=drift mode=monitor`` reads it as it is.

Each sampled request becomes one JSON line::

    {"captureData": {"endpointInput":  {"observedContentType": "application/json", "mode": "INPUT",
                                        "data": "<request body>", "encoding": "JSON"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "<response body>", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-12-02T21:05:51Z"}, "eventVersion": "0"}

under ``<dir>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<ms>-<uuid>.jsonl`` (the hour of the inference
time, UTC). A file is rotated when its hour ends or it holds ``max_file_records`` lines. Every line is written
and flushed to the OS before the response leaves, so a SIGTERM or a crash of the server loses no answered
request; closing fsyncs.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any


def _half(mode: str, body: str, content_type: str = "application/json") -> dict[str, str]:
    return {"observedContentType": content_type, "mode": mode, "data": body, "encoding": "JSON"}


def capture_record(request_body: str, response_body: str, event_id: str, inference_time: datetime) -> dict[str, Any]:
    return {
        "captureData": {"endpointInput": _half("INPUT", request_body), "endpointOutput": _half("OUTPUT", response_body)},
        "eventMetadata": {"eventId": event_id, "inferenceTime": inference_time.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0",
    }


class CaptureWriter:
    def __init__(self, root: str | Path, endpoint: str, variant: str, sampling_percentage: float,
                 max_file_records: int, seed: int = 0) -> None:
        self.folder = Path(root) / endpoint / variant
        self.sampling = float(sampling_percentage) / 100.0
        self.max_file_records = int(max_file_records)
        self.captured = 0
        self._draw = random.Random(seed).random  # seeded: a replayed load samples the same requests
        self._file: IO[str] | None = None
        self._hour: str | None = None
        self._lines_in_file = 0

    def sampled(self) -> bool:
        return self.sampling >= 1.0 or self._draw() < self.sampling

    def write(self, request_body: str, response_body: str, inference_time: datetime | None = None,
              event_id: str | None = None) -> None:
        when = (inference_time or datetime.now(timezone.utc)).astimezone(timezone.utc)
        line = json.dumps(capture_record(request_body, response_body, event_id or str(uuid.uuid4()), when))
        out = self._file_for(when)
        out.write(line + "\n")
        out.flush()
        self._lines_in_file += 1
        self.captured += 1

    def _file_for(self, when: datetime) -> IO[str]:
        hour = when.strftime("%Y/%m/%d/%H")
        if self._file is None or hour != self._hour or self._lines_in_file >= self.max_file_records:
            self.close()
            folder = self.folder / hour
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{when:%M-%S}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            self._file, self._hour, self._lines_in_file = open(folder / name, "a", encoding="utf-8"), hour, 0
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def parse_inference_time(value: str) -> datetime:
    """An ISO-8601 time (``2026-01-01T10:00:00Z``) from a request header; ValueError if it is not one."""
    when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
