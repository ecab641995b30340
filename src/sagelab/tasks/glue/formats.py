"""GLUE readers: the official TSV/CSV files as HF ``datasets``, or a hub dataset by name.

Every reader yields the column names of the hub's ``nyu-mll/glue`` configs
(``sentence`` or ``sentence1``/``sentence2``, and ``label``), so the task code is
the same whichever way the data arrives. Files are split on tabs with quoting off, as
GLUE's own loaders do: sentences contain bare quote characters.

A file is checked as it is read, and the first fault stops the command with one line naming
the file and line: bytes that are not UTF-8, a wrong number of fields, an over-long field, a
label that is not a number or not one of the task's ``num_labels`` classes (a score that is not
finite for regression), a file without examples.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagelab.readers.lines import BadInput, BadLine, read_utf8

Rows = dict[str, list[Any]]

# GLUE sentences are at most a few hundred characters. A field 1,000 times that is a broken file (rows run
# together, a pasted blob), and truncating it to max_length tokens would quietly train on a fragment of it.
MAX_FIELD_CHARS = 100_000


@dataclass(frozen=True)
class Layout:
    """Where a GLUE file keeps its label and sentences."""

    fields: int  # fields a row has (at least that many with ``extra_fields``)
    label: int
    texts: dict[str, int]  # hub column name -> field position
    header: bool = False
    extra_fields: bool = False  # STS-B rows may carry extra source columns
    strip: bool = False


LAYOUTS: dict[str, Layout] = {
    "cola": Layout(4, label=1, texts={"sentence": 3}),  # CoLA raw: source, label, original mark, sentence
    "sst2": Layout(2, label=1, texts={"sentence": 0}, header=True, strip=True),  # sentence, label
    "mrpc": Layout(5, label=0, texts={"sentence1": 3, "sentence2": 4}, header=True),  # quality, id1, id2, s1, s2
    "stsb": Layout(7, label=4, texts={"sentence1": 5, "sentence2": 6}, extra_fields=True),  # score in column 5
}


def parse_label(text: str, num_labels: int) -> int | float | str:
    """The label of a row, or why it is refused: a class in 0..num_labels-1, or a finite score (num_labels 1)."""
    try:
        value = float(text)
    except ValueError:
        return f"label {text!r} is not a number"
    if num_labels == 1:
        return value if math.isfinite(value) else f"score {text!r} is not a finite number"
    if not value.is_integer() or not 0 <= value < num_labels:
        return f"label {text!r} is not one of the {num_labels} classes 0..{num_labels - 1} (task.num_labels)"
    return int(value)


def read_glue(path: Path, fmt: str, num_labels: int) -> Rows:
    """The examples of one GLUE file in ``fmt``'s layout; the first fault is a BadInput naming file and line."""
    layout = LAYOUTS[fmt]
    rows: Rows = {name: [] for name in layout.texts} | {"label": []}

    def refuse(line: int, why: str) -> BadInput:
        return BadInput(BadLine(str(path), line, why))

    lines = io.StringIO(read_utf8(path), newline=None)
    for number, text in enumerate(lines, start=1):
        fields = text.rstrip("\n").split("\t")
        if (layout.header and number == 1) or fields == [""]:
            continue
        if len(fields) < layout.fields or (len(fields) > layout.fields and not layout.extra_fields):
            at_least = "at least " if layout.extra_fields else ""
            raise refuse(number, f"expected {at_least}{layout.fields} tab-separated fields, found {len(fields)}")
        longest = max(range(len(fields)), key=lambda i: len(fields[i]))
        if len(fields[longest]) > MAX_FIELD_CHARS:
            raise refuse(number, f"field {longest + 1} has {len(fields[longest]):,} characters "
                                 f"(at most {MAX_FIELD_CHARS:,}: a broken file?)")
        label = parse_label(fields[layout.label], num_labels)
        if isinstance(label, str):
            raise refuse(number, label)
        rows["label"].append(label)
        for name, position in layout.texts.items():
            rows[name].append(fields[position].strip() if layout.strip else fields[position])
    if not rows["label"]:
        raise refuse(0, "has no examples" + (" after its header" if layout.header else ""))
    return rows


def is_local_source(source: str) -> bool:
    return Path(source).exists() or source.startswith(("/", ".", "~"))


def load_split(source: str, fmt: str, files: list[str], hub_config: str | None, hub_split: str,
               num_labels: int) -> Any:
    """One split as a ``datasets.Dataset``: local files concatenated, or a hub dataset split."""
    import datasets

    if not is_local_source(source):
        return datasets.load_dataset(source, hub_config, split=hub_split)
    merged: Rows = {}
    for name in files:
        for column, values in read_glue(Path(source) / name, fmt, num_labels).items():
            merged.setdefault(column, []).extend(values)
    return datasets.Dataset.from_dict(merged)
