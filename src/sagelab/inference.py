"""How a task answers records outside training: one :class:`Handler` behind predict, batch transform, serving
and the logged MLflow model.

A task family that can answer requests returns a :class:`Handler` from ``Task.handler()``. Everything that
moves records around is shared and knows no task:

* ``mode=predict`` / ``mode=batch_transform`` (:mod:`sagelab.transform`) stream a file through it;
* ``mode=serve`` (:mod:`sagelab.serving`) answers HTTP requests with it, batching requests dynamically;
* the MLflow model (:mod:`sagelab.mlflow_model`) wraps it as a pyfunc.

A *record* is what the task's model answers (a dict, e.g. ``{"sentence": ...}`` or ``{"question", "context"}``).
``parse`` turns one input value -- a JSON line, a table row, a request item -- into a record, or says why it is
skipped; ``answer`` answers a batch of records in order. This module is cheap (no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

Parse = Callable[[Any, int], "dict[str, Any] | str"]  # (value, line) -> the record, or why it is skipped
Answer = Callable[[Any, list], "list[dict[str, Any]]"]  # (module, records) -> one answer per record


def text_size(record: dict[str, Any]) -> int:
    """A record's cost for length-sorting: the characters of its text values (tokens follow characters)."""
    return sum(len(v) for v in record.values() if isinstance(v, str))


@dataclass
class Handler:
    parse: Parse
    answer: Answer
    #: cost proxy used to sort records of similar length into one batch
    size: Callable[[dict[str, Any]], int] = text_size
    #: one valid request item, for the MLflow model's input example and the README
    example: Any = None
    #: the record keys an answer is keyed by (the MLflow signature's input columns)
    fields: list[str] = field(default_factory=list)

    def parse_request(self, body: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """A request body -> its records, or the reasons it cannot be answered (one per bad item).

        Accepted, as SageMaker's and Hugging Face's inference containers do: one item, a list of items, or
        ``{"inputs": <item or list>}``. An item is whatever ``parse`` takes (a string, a GLUE pair, a QA
        ``{"question", "context"}`` object).
        """
        if isinstance(body, dict) and "inputs" in body:
            body = body["inputs"]
        items = body if isinstance(body, list) and not self.is_pair(body) else [body]
        if not items:
            return [], ["the request has no inputs"]
        records, problems = [], []
        for number, item in enumerate(items):
            record = self.parse(item, number)
            if isinstance(record, str):
                problems.append(f"input {number}: {record}" if len(items) > 1 else record)
            else:
                records.append(record)
        return records, problems

    def answer_sorted(self, module: Any, records: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
        """Answers to ``records`` in their order, computed longest first in batches of ``batch_size``: each batch
        holds records of similar length, so it is padded little."""
        order = sorted(range(len(records)), key=lambda i: self.size(records[i]), reverse=True)
        answers: list[Any] = [None] * len(records)
        for start in range(0, len(order), batch_size):
            positions = order[start : start + batch_size]
            results = self.answer(module, [records[i] for i in positions])
            if len(results) != len(positions):
                raise RuntimeError(f"the task's handler gave {len(results)} answers for {len(positions)} records")
            for i, result in zip(positions, results):
                answers[i] = result
        return answers

    def is_pair(self, body: list) -> bool:
        """``["premise", "hypothesis"]`` sent to a sentence-pair task is one pair, not two inputs."""
        return len(self.fields) == 2 and len(body) == 2 and all(isinstance(v, str) for v in body)


def text_fields_parser(fields: list[str]) -> Parse:
    """Records holding a non-empty string in each of ``fields``.

    Accepted: an object with the fields; for one field, a bare string; for two, a ``[text, pair]`` list or
    ``{"text": ..., "text_pair": ...}`` (the transformers pipeline's shape).
    """

    def parse(value: Any, line: int) -> dict[str, Any] | str:
        if isinstance(value, str) and len(fields) == 1:
            value = {fields[0]: value}
        elif isinstance(value, list) and len(value) == len(fields) and len(fields) > 1:
            value = dict(zip(fields, value))
        elif isinstance(value, dict) and len(fields) == 2 and "text" in value and fields[0] not in value:
            value = {**value, fields[0]: value.get("text"), fields[1]: value.get("text_pair")}
        if not isinstance(value, dict):
            shape = "a string" if len(fields) == 1 else f"a [{', '.join(fields)}] list"
            return f"not a JSON object or {shape} ({type(value).__name__})"
        for name in fields:
            text = value.get(name)
            if not isinstance(text, str) or not text.strip():
                kind = "missing" if text is None else f"a {type(text).__name__}" if not isinstance(text, str) else "empty"
                return f"field {name!r} is {kind}, not text"
        return value

    return parse


def output_line(record: dict[str, Any], answer: dict[str, Any]) -> str:
    """One line of a predictions file: the record with its answer."""
    return json.dumps({**record, **answer})
