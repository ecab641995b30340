"""Capture reader: SageMaker data-capture lines, plain lines, folders in order, bad lines named."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sagelab.readers.capture import capture_line, read_capture


def _write(path: Path, lines: list[str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(data)
    return path


def test_sagemaker_capture_line_with_a_list_body_gives_one_record_per_sentence(tmp_path: Path) -> None:
    line = capture_line(["Thanks so much", "Nice to meet you"], "ev-1", "2022-01-01T00:00:00Z")
    f = _write(tmp_path / "c.jsonl", [line])
    cap = read_capture(f)
    assert cap.texts == ["Thanks so much", "Nice to meet you"]
    assert [(r.line, r.item, r.event_id) for r in cap.records] == [(1, 0, "ev-1"), (1, 1, "ev-1")]
    assert cap.records[0].inference_time == "2022-01-01T00:00:00Z"
    assert cap.bad_lines == []


def test_plain_text_lines_and_other_body_shapes(tmp_path: Path) -> None:
    b64 = base64.b64encode(json.dumps({"inputs": "from base64"}).encode()).decode()
    lines = [
        json.dumps({"text": "plain line"}),
        json.dumps({"captureData": {"endpointInput": {"data": json.dumps({"text": "object body"})}}}),
        json.dumps({"captureData": {"endpointInput": {"data": b64, "encoding": "BASE64"}}}),
        json.dumps({"captureData": {"endpointInput": {"data": "csv row one\ncsv row two",
                                                      "observedContentType": "text/csv", "encoding": "CSV"}}}),
        json.dumps(["bare", "list"]),
    ]
    cap = read_capture(_write(tmp_path / "c.jsonl", lines))
    assert cap.texts == ["plain line", "object body", "from base64", "csv row one", "csv row two", "bare", "list"]
    assert cap.bad_lines == []


def test_folder_is_read_in_sorted_path_order(tmp_path: Path) -> None:
    _write(tmp_path / "ep" / "2022" / "01" / "02" / "b.jsonl", [json.dumps({"text": "third"})])
    _write(tmp_path / "ep" / "2022" / "01" / "01" / "z.jsonl", [json.dumps({"text": t}) for t in ("first", "second")])
    (tmp_path / "ep" / "notes.txt").write_text("ignored: not a capture file")
    cap = read_capture(tmp_path)
    assert cap.texts == ["first", "second", "third"]
    assert len(cap.files) == 2 and cap.files[0].endswith("01/z.jsonl")


def test_corrupt_lines_are_listed_by_file_and_line_and_good_records_survive(tmp_path: Path) -> None:
    good = tmp_path / "a.jsonl"
    _write(
        good,
        [
            json.dumps({"text": "good one"}),
            b'{"text": "bad \xff\xfe bytes"}',  # not UTF-8
            '{"text": "truncated',  # not JSON
            json.dumps({"label": 1}),  # no text key
            json.dumps({"text": "   "}),  # empty text
            "",  # blank line
            json.dumps({"captureData": {"endpointInput": {"data": "not json at all"}}}),
            json.dumps({"captureData": {"endpointOutput": {}}}),
            capture_line(["good two"]),
        ],
    )
    empty = tmp_path / "b.jsonl"
    empty.write_bytes(b"")
    cap = read_capture([good, empty])
    assert cap.texts == ["good one", "good two"]
    bad = [(Path(b.file).name, b.line) for b in cap.bad_lines]
    assert bad == [("a.jsonl", n) for n in (2, 3, 4, 5, 6, 7, 8)] + [("b.jsonl", 0)]
    reasons = [b.reason for b in cap.bad_lines]
    assert "not UTF-8" in reasons[0] and "not JSON" in reasons[1] and "none of the keys" in reasons[2]
    assert reasons[3] == "no text in the request" and reasons[4] == "blank line"
    assert "endpointInput.data is not JSON" in reasons[5] and "no endpointInput" in reasons[6]
    assert reasons[7] == "empty file"
    assert cap.lines_read == 9


def test_event_metadata_that_is_not_an_object_is_a_bad_line(tmp_path: Path) -> None:
    line = json.loads(capture_line(["meta is a string"]))
    line["eventMetadata"] = "x"
    cap = read_capture(_write(tmp_path / "c.jsonl", [json.dumps(line), capture_line(["fine"], "ev-2")]))
    assert cap.texts == ["fine"] and cap.records[0].event_id == "ev-2"
    assert [(Path(b.file).name, b.line) for b in cap.bad_lines] == [("c.jsonl", 1)]
    assert "eventMetadata is a str, not an object" in cap.bad_lines[0].reason
    assert cap.lines_read == 2


def test_json_nested_100000_deep_is_a_bad_line_not_a_recursion_error(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    inner = json.dumps({"captureData": {"endpointInput": {"data": deep}}})  # deep inside the request body
    body_800 = json.dumps({"text": json.loads("[" * 800 + '"deep but parseable"' + "]" * 800)})
    cap = read_capture(_write(tmp_path / "c.jsonl", [deep, inner, body_800, json.dumps({"text": "after"})]))
    assert cap.texts == ["deep but parseable", "after"]
    assert [(b.line, b.reason) for b in cap.bad_lines] == [
        (1, "not JSON: nested too deeply"), (2, "endpointInput.data is not JSON (nested too deeply)")]
    assert cap.lines_read == 4


def test_non_utf8_bytes_are_bad_lines_wherever_they_are(tmp_path: Path) -> None:
    latin1 = base64.b64encode("caf\u00e9".encode("latin-1")).decode()  # base64 of bytes that are not UTF-8
    lines = [
        b"\xff\xfe\x00\x01",  # raw bytes, not UTF-8 at all
        '{"text": "ok one"}',
        b'{"text": "caf\xe9"}',  # latin-1 e-acute inside otherwise fine JSON
        json.dumps({"captureData": {"endpointInput": {"data": latin1, "encoding": "BASE64"}}}),
        '{"text": "ok two"}',
    ]
    cap = read_capture(_write(tmp_path / "c.jsonl", lines))
    assert cap.texts == ["ok one", "ok two"]
    assert [b.line for b in cap.bad_lines] == [1, 3, 4]
    assert all("UTF-8" in b.reason for b in cap.bad_lines)
    assert all(b.file == str(tmp_path / "c.jsonl") for b in cap.bad_lines)
    assert cap.lines_read == 5


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_capture(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    cap = read_capture(tmp_path / "empty")
    assert cap.records == [] and cap.bad_lines[0].line == 0 and "no .jsonl" in cap.bad_lines[0].reason


# -- other text sources (baseline_source / capture) -------------------------------------------------
def test_table_source_reads_quoted_multiline_reviews_and_names_a_missing_column(tmp_path: Path) -> None:
    from sagelab.config import ConfigError
    from sagelab.tasks.drift.sources import read_source

    path = tmp_path / "r.tsv"
    path.write_text('sentence\tlabel\n"Great book\n\tsecond line, with a ""quote"""\t1\n""\t0\nplain\t1\n')
    data = read_source(str(path))
    assert data.texts == ['Great book\n\tsecond line, with a "quote"', "plain"]
    assert [(b.line, b.reason) for b in data.bad_lines] == [(4, "empty 'sentence'")]
    with pytest.raises(ConfigError, match="'text' is not a column"):
        read_source(str(path), text_column="text")


def test_task_source_reads_that_tasks_training_text() -> None:
    from sagelab.config import ConfigError
    from sagelab.tasks.drift.sources import check_source, read_source

    data = read_source("task:glue_cola")
    assert len(data.texts) == 8551 and data.files[0].endswith("in_domain_train.tsv")
    with pytest.raises(ConfigError, match="no conf/task/nope.yaml"):
        check_source("task.baseline_source", "task:nope")


def test_text_and_table_sources_with_bytes_that_are_not_utf8_name_file_and_line(tmp_path: Path) -> None:
    from sagelab.config import ConfigError
    from sagelab.tasks.drift.sources import read_source

    text = _write(tmp_path / "b.txt", ["fine", b"caf\xe9 au lait"])
    table = _write(tmp_path / "b.tsv", ["sentence\tlabel", '"quoted\nover two lines"\t1', b"caf\xe9\t0"])
    for path, line in ((text, 2), (table, 4)):
        with pytest.raises(ConfigError) as err:
            read_source(str(path))
        assert err.value.key == str(path) and err.value.message == f"line {line}: not UTF-8 (byte 0xe9 at column 4)"


def test_table_rows_with_the_wrong_field_count_are_listed(tmp_path: Path) -> None:
    from sagelab.tasks.drift.sources import read_source

    table = _write(tmp_path / "r.csv", ["sentence,label", "good,1", "no label", "a,b,c", "", "last,0"])
    data = read_source(str(table))
    assert data.texts == ["good", "last"] and data.lines_read == 4
    assert [(b.line, b.reason) for b in data.bad_lines] == [
        (3, "1 fields, the header has 2"), (4, "3 fields, the header has 2")]
    empty = _write(tmp_path / "e.tsv", [])
    assert [(b.line, b.reason) for b in read_source(str(empty)).bad_lines] == [(0, "empty file")]
