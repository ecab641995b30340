"""Where baseline and monitored text comes from.

``task.baseline_source`` and ``task.capture`` accept

* a capture file or folder (``.jsonl``/``.json``): read by :mod:`sagelab.data.capture`,
  bad lines listed and skipped;
* a delimited file (``.tsv``/``.csv``) with a header holding ``task.text_column``,
  read with a real CSV reader (review texts are quoted and span lines);
* a ``.txt`` file, one text per line;
* ``task:<name>`` (baseline only): the training text of another sagelab task,
  e.g. ``task:glue_cola`` -- the data the fine-tuned model learnt from.
"""

from __future__ import annotations

import csv
from pathlib import Path

from omegaconf import OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError
from sagelab.data.capture import CAPTURE_SUFFIXES, BadLine, CaptureData, Record, read_capture

TABLE_SUFFIXES = (".tsv", ".csv")
TEXT_SUFFIXES = (".txt",)


def check_source(key: str, ref: str) -> None:
    """Cheap validation of a source reference (existence and kind), for ``Task.check``."""
    if ref.startswith("task:"):
        name = ref[len("task:") :]
        if not (PROJECT_ROOT / "conf" / "task" / f"{name}.yaml").exists():
            raise ConfigError(key, f"'{ref}' names task '{name}', which has no conf/task/{name}.yaml.")
        return
    path = Path(ref)
    if not path.exists():
        raise ConfigError(key, f"'{ref}' does not exist.")
    if path.is_file() and path.suffix.lower() not in (*CAPTURE_SUFFIXES, *TABLE_SUFFIXES, *TEXT_SUFFIXES):
        allowed = ", ".join((*CAPTURE_SUFFIXES, *TABLE_SUFFIXES, *TEXT_SUFFIXES))
        raise ConfigError(key, f"'{ref}' has an unknown file type; use a folder or a file ending in {allowed}.")


def read_table(path: Path, text_column: str) -> CaptureData:
    """Rows of a delimited file with a header; empty texts are listed as bad lines (by record number)."""
    csv.field_size_limit(1 << 30)
    out = CaptureData(files=[str(path)])
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if text_column not in (reader.fieldnames or []):
            raise ConfigError(
                "task.text_column",
                f"'{text_column}' is not a column of {path} (columns: {', '.join(reader.fieldnames or [])}).",
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


def read_text_lines(path: Path) -> CaptureData:
    out = CaptureData(files=[str(path)])
    with open(path, encoding="utf-8-sig", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            out.lines_read += 1
            if line.strip():
                out.records.append(Record(line.strip(), str(path), number))
    if not out.records:
        out.bad_lines.append(BadLine(str(path), 0, "empty file"))
    return out


def read_task_texts(name: str) -> CaptureData:
    """Training text of task ``name`` (its ``text_fields`` of ``train_file``), through that task's reader."""
    from sagelab.data.glue import READERS

    cfg = OmegaConf.load(PROJECT_ROOT / "conf" / "task" / f"{name}.yaml")
    fmt = str(cfg.get("format", ""))
    if fmt not in READERS or "train_file" not in cfg:
        raise ConfigError(
            "task.baseline_source", f"task '{name}' has no local training file sagelab can read text from."
        )
    path = Path(str(cfg.source)) / str(cfg.train_file)
    if not path.exists():
        raise ConfigError("task.baseline_source", f"training file {path} of task '{name}' does not exist.")
    rows = READERS[fmt](path)
    out = CaptureData(files=[str(path)])
    for field in cfg.text_fields:
        for i, text in enumerate(rows[str(field)], start=1):
            out.lines_read += 1
            out.records.append(Record(str(text), str(path), i))
    return out


def read_source(ref: str, text_column: str = "sentence") -> CaptureData:
    """Records of a source reference (see the module docstring), in order."""
    if ref.startswith("task:"):
        return read_task_texts(ref[len("task:") :])
    path = Path(ref)
    if path.is_dir() or path.suffix.lower() in CAPTURE_SUFFIXES:
        return read_capture(path)
    if path.suffix.lower() in TABLE_SUFFIXES:
        return read_table(path, text_column)
    return read_text_lines(path)
