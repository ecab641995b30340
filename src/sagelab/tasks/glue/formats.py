"""GLUE readers: the official TSV/CSV files as HF ``datasets``, or a hub dataset by name.

Every reader yields the column names of the hub's ``nyu-mll/glue`` configs
(``sentence`` or ``sentence1``/``sentence2``, and ``label``), so the task code is
the same whichever way the data arrives. Files are read with quoting off, as
GLUE's own loaders do: sentences contain bare quote characters.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

from sagelab.config import ConfigError

Rows = dict[str, list[Any]]


def _read_tsv(path: Path, encoding: str = "utf-8") -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _bad_row(path: Path, line: int, why: str) -> ConfigError:
    return ConfigError(str(path), f"line {line}: {why}")


def read_cola(path: Path) -> Rows:
    """CoLA raw: no header; source, label, original mark, sentence."""
    rows: Rows = {"sentence": [], "label": []}
    for line, fields in enumerate(_read_tsv(path), start=1):
        if len(fields) != 4:
            raise _bad_row(path, line, f"expected 4 tab-separated fields, found {len(fields)}")
        rows["sentence"].append(fields[3])
        rows["label"].append(int(fields[1]))
    return rows


def read_sst2(path: Path) -> Rows:
    """SST-2: header ``sentence<TAB>label``."""
    rows: Rows = {"sentence": [], "label": []}
    for line, fields in enumerate(_read_tsv(path)[1:], start=2):
        if len(fields) != 2:
            raise _bad_row(path, line, f"expected 2 tab-separated fields, found {len(fields)}")
        rows["sentence"].append(fields[0].strip())
        rows["label"].append(int(fields[1]))
    return rows


def read_mrpc(path: Path) -> Rows:
    """MRPC (GLUE format): BOM, header, quality, id1, id2, string1, string2."""
    rows: Rows = {"sentence1": [], "sentence2": [], "label": []}
    for line, fields in enumerate(_read_tsv(path, encoding="utf-8-sig")[1:], start=2):
        if len(fields) != 5:
            raise _bad_row(path, line, f"expected 5 tab-separated fields, found {len(fields)}")
        rows["label"].append(int(fields[0]))
        rows["sentence1"].append(fields[3])
        rows["sentence2"].append(fields[4])
    return rows


def read_stsb(path: Path) -> Rows:
    """STS Benchmark: score in column 5, sentences in 6 and 7 (some rows carry extra source columns)."""
    rows: Rows = {"sentence1": [], "sentence2": [], "label": []}
    for line, fields in enumerate(_read_tsv(path), start=1):
        if len(fields) < 7:
            raise _bad_row(path, line, f"expected at least 7 tab-separated fields, found {len(fields)}")
        rows["label"].append(float(fields[4]))
        rows["sentence1"].append(fields[5])
        rows["sentence2"].append(fields[6])
    return rows


READERS: dict[str, Callable[[Path], Rows]] = {
    "cola": read_cola,
    "sst2": read_sst2,
    "mrpc": read_mrpc,
    "stsb": read_stsb,
}


def is_local_source(source: str) -> bool:
    return Path(source).exists() or source.startswith(("/", ".", "~"))


def load_split(source: str, fmt: str, files: list[str], hub_config: str | None, hub_split: str) -> Any:
    """One split as a ``datasets.Dataset``: local files concatenated, or a hub dataset split."""
    import datasets

    if not is_local_source(source):
        return datasets.load_dataset(source, hub_config, split=hub_split)
    merged: Rows = {}
    for name in files:
        for column, values in READERS[fmt](Path(source) / name).items():
            merged.setdefault(column, []).extend(values)
    return datasets.Dataset.from_dict(merged)
