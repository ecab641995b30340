"""SageMaker Ground Truth named-entity-recognition manifests: read, check and write them.

An *output* manifest (what a Ground Truth NER labelling job writes, and what this family trains on) is JSON
Lines, one document a line::

    {"source": "Empire State Building = ESB .",
     "<attribute>": {"annotations": {"entities": [{"label": "location", "startOffset": 0, "endOffset": 21}, ...],
                                     "labels": [{"label": "location"}, {"label": "person"}, ...]}},
     "<attribute>-metadata": {"entities": [{"confidence": 0.93}, ...], "job-name": "labeling-job/...",
                              "type": "groundtruth/text-span", "human-annotated": "yes",
                              "creation-date": "2026-12-02T10:00:00.000000"}}

``<attribute>`` is the labelling job's label attribute name (``task.label_attribute``). Offsets count Unicode
code points, so ``source[startOffset:endOffset]`` on a Python ``str`` is the entity's text, whatever emoji or
combining characters come before it. An *input* manifest has ``source`` alone; every other key of a document
(earlier jobs' labels, ``tokenRows``, a relationship or classification annotation) is kept as it is and never
read here.

No torch: the task's checks read manifests before anything heavy is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from sagelab.config import ConfigError
from sagelab.readers import BadLine, read_json_records

SPAN_TYPE = "groundtruth/text-span"  # Ground Truth's metadata type for the NER task type


@dataclass(frozen=True, order=True)
class Entity:
    """One labelled span of a document, in code points: ``text[start:end]``."""

    start: int
    end: int
    label: str


@dataclass
class Document:
    """A manifest line: its text, its entities (by start) and the whole JSON object, to pass through."""

    line: int
    source: str
    entities: list[Entity] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def parse_source(value: Any) -> str | None:
    """Why ``value`` is not a document with text to label, or None when it is."""
    if not isinstance(value, dict):
        return f"not a JSON object ({type(value).__name__})"
    source = value.get("source")
    if source is None and "source-ref" in value:
        return "'source-ref' (text kept in S3) is not read here; put the text itself in 'source'"
    if not isinstance(source, str) or not source.strip():
        return "'source' is missing, not text, or blank"
    return None


def parse_document(value: Any, line: int, attribute: str, labels: Sequence[str]) -> Document | str:
    """A labelled document, or why the line cannot be one (offsets outside the text, an unknown label ...)."""
    problem = parse_source(value)
    if problem:
        return problem
    text = value["source"]
    block = value.get(attribute)
    entities = block.get("annotations", {}).get("entities") if isinstance(block, dict) else None
    if not isinstance(entities, list):
        return f"no '{attribute}.annotations.entities' list (task.label_attribute is '{attribute}')"
    found = []
    for n, entity in enumerate(entities):
        if not isinstance(entity, dict):
            return f"entity {n} is not a JSON object"
        start, end, label = entity.get("startOffset"), entity.get("endOffset"), entity.get("label")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            return f"entity {n}: startOffset and endOffset must be whole numbers, got {start!r} and {end!r}"
        if not 0 <= start < end <= len(text):
            return (f"entity {n}: offsets {start}..{end} do not lie within the text "
                    f"({len(text)} characters; offsets count Unicode code points)")
        if label not in labels:
            return f"entity {n}: unknown label {label!r} (task.labels: {', '.join(labels)})"
        found.append(Entity(start, end, label))
    return Document(line, text, sorted(found), value)


def read_manifest(path: str | Path, attribute: str, labels: Sequence[str], key: str) -> list[Document]:
    """Every document of a labelled manifest; the first bad line is a :class:`ConfigError` naming file and line."""
    bad: list[BadLine] = []
    documents = []
    for line, value in read_json_records(Path(path), bad):
        parsed = parse_document(value, line, attribute, labels)
        if isinstance(parsed, str):
            bad.append(BadLine(str(path), line, parsed))
        else:
            documents.append(parsed)
    if bad:
        first = min(bad, key=lambda b: b.line)
        more = f" (and {len(bad) - 1} more bad line{'s' * (len(bad) > 2)})" if len(bad) > 1 else ""
        raise ConfigError(key, f"{first}{more}")
    if not documents:
        raise ConfigError(key, f"'{path}' holds no document.")
    return documents


def labelled(record: dict[str, Any], attribute: str, labels: Sequence[str], entities: Iterable[Entity],
             confidences: Iterable[float], job_name: str, human: bool, created: str | None = None) -> dict[str, Any]:
    """``record`` with ``<attribute>`` and ``<attribute>-metadata`` set as a Ground Truth NER job writes them;
    every other key is kept (an existing label attribute of the same name is replaced)."""
    entities = list(entities)
    annotation = {"annotations": {
        "entities": [{"label": e.label, "startOffset": e.start, "endOffset": e.end} for e in entities],
        "labels": [{"label": label} for label in labels],
    }}
    metadata = {
        "entities": [{"confidence": round(float(c), 4)} for c in confidences],
        "job-name": job_name,
        "type": SPAN_TYPE,
        "human-annotated": "yes" if human else "no",
        "creation-date": created or datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds"),
    }
    return {**record, attribute: annotation, f"{attribute}-metadata": metadata}


def write_manifest(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write JSON Lines (UTF-8, characters unescaped); returns the number of lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
