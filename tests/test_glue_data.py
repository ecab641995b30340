"""The shipped GLUE files read completely, with the hub's column names; a bad file is named by line."""

from pathlib import Path

import pytest

from sagelab.config import ConfigError
from sagelab.tasks.glue.formats import load_split, read_glue

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
    dataset = load_split(str(DATA / folder), fmt, files, None, "train", num_labels=1 if fmt == "stsb" else 2)
    assert len(dataset) == rows
    assert set(dataset.column_names) == columns


def test_sst2_train_counts_and_quotes_kept():
    dataset = load_split(str(DATA / "SST-2"), "sst2", ["train.tsv"], None, "train", num_labels=2)
    assert len(dataset) == 67349 and sum(dataset["label"]) == 37569


STSB_ROW = "main\tMSRvid\t2012test\t0001\t{}\tA man is dancing.\tA man dances.\n"


@pytest.mark.parametrize(
    ("fmt", "num_labels", "content", "message"),
    [
        ("cola", 2, b"gj04\t1\t\tFine.\ngj04\tbroken line\n", "line 2: expected 4 tab-separated fields, found 2"),
        ("cola", 2, b"gj04\t1\t\tFine.\ngj04\t1\t\tCaf\xe9.\n", "line 2: not UTF-8 (byte 0xe9 at column 12)"),
        ("cola", 2, b"gj04\tyes\t\tFine.\n", "line 1: label 'yes' is not a number"),
        ("cola", 2, b"gj04\t1\t\tFine.\n\ngj04\t2\t\tFine.\n", "line 3: label '2' is not one of the 2 classes 0..1"),
        ("cola", 2, b"gj04\t0.5\t\tFine.\n", "line 1: label '0.5' is not one of the 2 classes"),
        ("cola", 2, ("gj04\t1\t\t" + "x" * 200_000 + "\n").encode(), "line 1: field 4 has 200,000 characters"),
        ("cola", 2, b"", "has no examples"),
        ("sst2", 2, b"sentence\tlabel\n", "has no examples after its header"),
        ("mrpc", 2, b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\n", "line 2: expected 5 tab-separated"),
        ("stsb", 1, STSB_ROW.format("nan").encode(), "line 1: score 'nan' is not a finite number"),
        ("stsb", 1, STSB_ROW.format("").encode(), "line 1: label '' is not a number"),
    ],
)
def test_bad_file_names_file_and_line(tmp_path, fmt, num_labels, content, message):
    bad = tmp_path / "train.tsv"
    bad.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_glue(bad, fmt, num_labels)
    assert err.value.key == str(bad) and message in err.value.message, err.value.message


def test_scores_and_blank_lines(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text(STSB_ROW.format("4.5") + "\n" + STSB_ROW.format("0").rstrip("\n") + "\textra\tsource\n")
    rows = read_glue(path, "stsb", 1)
    assert rows["label"] == [4.5, 0.0] and rows["sentence2"] == ["A man dances.", "A man dances."]
