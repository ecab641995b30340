"""Where baseline and monitored text comes from.

``task.baseline_source`` and ``task.capture`` accept

* a capture file or folder (``.jsonl``/``.json``): read by :mod:`sagelab.readers.capture`,
  bad lines listed and skipped;
* a delimited file (``.tsv``/``.csv``) with a header holding ``task.text_column``,
  read by :mod:`sagelab.readers.tables` (review texts are quoted and span lines);
* a ``.txt`` file, one text per line;
* ``task:<name>`` (baseline only): the training text of another sagelab task,
  e.g. ``task:glue_cola`` -- the data the fine-tuned model learnt from.

Bytes that are not UTF-8 in a ``.txt`` or a table stop the command, naming file and line: unlike a
capture line, such a file was prepared by someone, and a wrong encoding garbles every text in it.
"""

from __future__ import annotations

import io
from pathlib import Path

from omegaconf import OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError
from sagelab.readers.capture import CAPTURE_SUFFIXES, CaptureData, Record, read_capture
from sagelab.readers.lines import BadLine, read_utf8
from sagelab.readers.tables import TABLE_SUFFIXES, read_table

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


def read_text_lines(path: Path) -> CaptureData:
    out = CaptureData(files=[str(path)])
    for number, line in enumerate(io.StringIO(read_utf8(path), newline=None), start=1):
        out.lines_read += 1
        if line.strip():
            out.records.append(Record(line.strip(), str(path), number))
    if not out.records:
        out.bad_lines.append(BadLine(str(path), 0, "empty file"))
    return out


def read_task_texts(name: str) -> CaptureData:
    """Training text of task ``name`` (its ``text_fields`` of ``train_file``), through that task's reader."""
    from sagelab.tasks.glue.formats import LAYOUTS, read_glue

    cfg = OmegaConf.load(PROJECT_ROOT / "conf" / "task" / f"{name}.yaml")
    fmt = str(cfg.get("format", ""))
    if fmt not in LAYOUTS or "train_file" not in cfg:
        raise ConfigError(
            "task.baseline_source", f"task '{name}' has no local training file sagelab can read text from."
        )
    path = Path(str(cfg.source)) / str(cfg.train_file)
    if not path.exists():
        raise ConfigError("task.baseline_source", f"training file {path} of task '{name}' does not exist.")
    rows = read_glue(path, fmt, int(cfg.get("num_labels", 2)))
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
        return read_table(path, text_column, "task.text_column")
    return read_text_lines(path)
