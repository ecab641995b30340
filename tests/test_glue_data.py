"""The shipped GLUE files read completely, with the hub's column names."""

from pathlib import Path

import pytest

from sagelab.config import ConfigError
from sagelab.tasks.glue.formats import load_split, read_cola

DATA = Path(__file__).resolve().parents[1] / "data" / "glue"


@pytest.mark.parametrize(
    ("folder", "fmt", "files", "rows", "columns"),
    [
        ("CoLA", "cola", ["in_domain_train.tsv"], 8551, {"sentence", "label"}),
        ("CoLA", "cola", ["in_domain_dev.tsv", "out_of_domain_dev.tsv"], 1043, {"sentence", "label"}),
        ("SST-2", "sst2", ["dev.tsv"], 872, {"sentence", "label"}),
        ("MRPC", "mrpc", ["train.tsv"], 3668, {"sentence1", "sentence2", "label"}),
        ("MRPC", "mrpc", ["dev.tsv"], 408, {"sentence1", "sentence2", "label"}),
        ("STS-B", "stsb", ["sts-train.csv"], 5749, {"sentence1", "sentence2", "label"}),
        ("STS-B", "stsb", ["sts-dev.csv"], 1500, {"sentence1", "sentence2", "label"}),
    ],
)
def test_shipped_splits(folder, fmt, files, rows, columns):
    dataset = load_split(str(DATA / folder), fmt, files, None, "train")
    assert len(dataset) == rows
    assert set(dataset.column_names) == columns


def test_sst2_train_counts_and_quotes_kept():
    dataset = load_split(str(DATA / "SST-2"), "sst2", ["train.tsv"], None, "train")
    assert len(dataset) == 67349 and sum(dataset["label"]) == 37569


def test_malformed_file_names_file_and_line(tmp_path):
    bad = tmp_path / "in_domain_train.tsv"
    bad.write_text("gj04\t1\t\tA fine sentence.\ngj04\tbroken line\n")
    with pytest.raises(ConfigError) as err:
        read_cola(bad)
    assert str(bad) in str(err.value) and "line 2" in str(err.value)
