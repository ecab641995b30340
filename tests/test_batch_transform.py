"""``mode=batch_transform``: windows answered in length-sorted batches come back in input order; a folder of
mixed files is one input; bad lines are listed and skipped; two processes write what one does; and a run
killed half-way (SIGKILL, then SIGTERM) and re-run writes exactly the bytes of an uninterrupted run.

Kills come from the process itself right after a chosen commit (``fault_probes.SignalAfterCommit``), so the
state file holds a known number of committed windows and no outcome depends on timing. The model is the tiny
random BERT; its answers are arbitrary but fixed, which is all order and resume need.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli_env, compose_config, dispatch_cfg, tiny_overrides

SST2 = ROOT / "data" / "glue" / "SST-2" / "dev.tsv"


def sentences(count: int) -> list[str]:
    with open(SST2, encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["sentence"].strip() for row, _ in zip(rows, range(count))]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"sentence": t}) + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random SST-2 weights, saved as the runner loads them."""
    import torch

    from sagelab.tasks.glue.task import GlueTask

    tmp = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    path = tmp / "random.ckpt"
    torch.save({"state_dict": GlueTask(compose_config("task=glue_sst2", tmp=tmp)).module().state_dict()}, path)
    return path


def transform(tmp: Path, checkpoint: Path, source: Path, output: Path, *extra: str) -> dict:
    """One batch transform in this process, as ``run.py`` would run it."""
    cfg = compose_config("task=glue_sst2", "mode=batch_transform", f"checkpoint.load={checkpoint}",
                         f"predict.input={source}", f"predict.output={output}", *extra, tmp=tmp)
    return dispatch_cfg(cfg)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- order ----------------------------------------------------------------------------------------------------
def test_a_window_is_answered_longest_first_and_written_in_input_order() -> None:
    from sagelab.inference import Handler
    from sagelab.transform.answering import answer_window

    batches: list[list[str]] = []

    def answer(module, records):
        batches.append([r["text"] for r in records])
        return [{"length": len(r["text"])} for r in records]

    texts = ["bb", "a", "dddd", "ccc", "eeeee", "a"]
    handler = Handler(lambda value, line: value, answer)
    lines = answer_window(handler, None, [{"text": t} for t in texts], batch_size=2)
    assert batches == [["eeeee", "dddd"], ["ccc", "bb"], ["a", "a"]]
    assert [json.loads(line) for line in lines.splitlines()] == [{"text": t, "length": len(t)} for t in texts]


def test_length_sorted_answers_equal_one_at_a_time_in_input_order(tmp_path: Path, checkpoint: Path) -> None:
    texts = sentences(40)
    assert sorted(texts, key=len, reverse=True) != texts  # sorting has something to reorder
    source = write_jsonl(tmp_path / "in.jsonl", texts)
    batched, single = tmp_path / "batched.jsonl", tmp_path / "single.jsonl"
    metrics = transform(tmp_path, checkpoint, source, batched, "optim.eval_batch_size=8", "predict.window=16")
    transform(tmp_path, checkpoint, source, single, "optim.eval_batch_size=1")
    assert metrics["predict/records"] == 40 and metrics["predict/lines_per_s"] > 0
    got, want = rows(batched), rows(single)
    assert [r["sentence"] for r in got] == texts
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert [r["probability"] for r in got] == pytest.approx([r["probability"] for r in want], abs=1e-5)


# -- input ----------------------------------------------------------------------------------------------------
def test_a_folder_of_jsonl_csv_and_txt_is_one_input_in_sorted_order(tmp_path: Path, checkpoint: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    texts = sentences(9)
    folder = tmp_path / "input"
    (folder / "b").mkdir(parents=True)
    (folder / "a.jsonl").write_text(json.dumps({"sentence": texts[0]}) + '\n{"sentence": \n'
                                    + json.dumps([texts[1]]) + "\n" + json.dumps(texts[2]) + "\n")
    (folder / "b" / "c.csv").write_text(f'sentence,id\n"{texts[3]}",1\n"{texts[4]}"\n"{texts[5]}",3\n')
    (folder / "d.txt").write_bytes(f"{texts[6]}\n\n{texts[7]}\r\nna\xefve\n".encode() + b"caf\xe9\n"
                                   + texts[8].encode() + b"\n")
    (folder / "notes.md").write_text("not an input\n")
    (folder / ".hidden.jsonl").write_text("{}\n")
    output = tmp_path / "out" / "answers.jsonl"
    metrics = transform(tmp_path, checkpoint, folder, output)
    assert [r["sentence"] for r in rows(output)] == [*(texts[i] for i in (0, 2, 3, 5, 6, 7)), "na\xefve", texts[8]]
    skipped = [(b["file"], b["line"], b["reason"]) for b in rows(output.with_name("answers.skipped.jsonl"))]
    assert skipped == [
        (f"{folder}/notes.md", 0, "not an input file (reads .jsonl, .jsonlines, .ndjson, .json, .manifest, .tsv, "
                                  ".csv, .txt)"),
        (f"{folder}/a.jsonl", 2, "not JSON: Expecting value"),
        (f"{folder}/a.jsonl", 3, "not a JSON object or a string (list)"),
        (f"{folder}/b/c.csv", 3, "1 fields, the header has 2"),
        (f"{folder}/d.txt", 5, "not UTF-8 (byte 0xe9 at column 4)"),
    ]
    assert metrics["predict/records"] == 8 and metrics["predict/skipped"] == 5
    out = capsys.readouterr().out
    assert f"{folder}/b/c.csv:3: skipped (1 fields, the header has 2)" in out
    assert f"wrote 8 predictions to {output}; skipped 5 record(s)" in out


def test_bad_lines_past_twenty_are_counted_and_all_listed_in_the_skipped_file(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"sentence": {n}}}\n' for n in range(25)) + '{"sentence": "Fine."}\n')
    output = tmp_path / "answers.jsonl"
    transform(tmp_path, checkpoint, source, output)
    printed = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    assert printed[:20] == [f"{source}:{n}: skipped (field 'sentence' is a int, not text)" for n in range(1, 21)]
    assert printed[20] == f"... and 5 more skipped; all in {tmp_path / 'answers.skipped.jsonl'}"
    assert [b["line"] for b in rows(tmp_path / "answers.skipped.jsonl")] == list(range(1, 26))
    assert [r["sentence"] for r in rows(output)] == ["Fine."]


def test_an_output_inside_the_input_folder_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    from sagelab.config import ConfigError

    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "a.jsonl", ["Fine."])
    with pytest.raises(ConfigError, match="is inside the input folder"):
        transform(tmp_path, checkpoint, tmp_path / "in", tmp_path / "in" / "answers.jsonl")


# -- processes --------------------------------------------------------------------------------------------------
def test_two_processes_write_exactly_what_one_does(tmp_path: Path, checkpoint: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(30) + ["", "Fine."])
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    transform(tmp_path, checkpoint, source, one, "predict.window=4")
    metrics = transform(tmp_path, checkpoint, source, two, "predict.window=4", "strategy=ddp")
    assert metrics["predict/records"] == 31 and metrics["predict/skipped"] == 1
    assert two.read_bytes() == one.read_bytes()


# -- resume -------------------------------------------------------------------------------------------------------
def state(output: Path) -> dict:
    return json.loads(output.with_name(output.name + ".state.json").read_text())


def stop_after(windows: int, signal: str, marker: Path) -> list[str]:
    return ["+callbacks.probe._target_=fault_probes.SignalAfterCommit", f"+callbacks.probe.windows={windows}",
            f"+callbacks.probe.signal={signal}", f"+callbacks.probe.marker={marker}"]


def test_killed_half_way_and_run_again_writes_exactly_an_uninterrupted_run(tmp_path: Path, checkpoint: Path) -> None:
    texts = sentences(30)
    source = write_jsonl(tmp_path / "in.jsonl", texts[:12])
    with open(source, "a", encoding="utf-8") as more:  # an empty record, a blank line (no record), not JSON
        more.write('{"sentence": ""}\n\nnot json\n' + "".join(json.dumps({"sentence": t}) + "\n" for t in texts[12:]))
    plain, output = tmp_path / "plain" / "answers.jsonl", tmp_path / "answers.jsonl"

    def run(out: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(ROOT / "run.py"), *tiny_overrides(tmp_path), "task=glue_sst2",
               "mode=batch_transform", f"checkpoint.load={checkpoint}", f"predict.input={source}",
               f"predict.output={out}", "predict.window=4", *extra]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=cli_env())

    done = run(plain)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = run(output, *stop_after(2, "SIGKILL", tmp_path / "killed"))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert state(output)["consumed"] == 8 and state(output)["finished"] is False
    assert len(output.read_text().splitlines()) == 8

    # resumes in 2 worker processes, then stops at its 2nd window (window 4): the workers go with it
    stopped = run(output, "strategy=ddp", *stop_after(2, "SIGTERM", tmp_path / "stopped"))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert f"sagelab: resuming {output}: 8 input line(s) done in an earlier run (8 answered, 0 skipped)." \
        in stopped.stderr
    assert f"batch transform stopped; 16 input line(s) committed to {output}" in stopped.stderr
    assert "Traceback" not in stopped.stderr and state(output)["consumed"] == 16

    resumed = run(output, *stop_after(2, "SIGTERM", tmp_path / "stopped"))  # fired once already: runs to the end
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr and state(output)["finished"] is True
    assert output.read_bytes() == plain.read_bytes()
    assert len(output.read_text().splitlines()) == 30
    skipped = output.with_name("answers.skipped.jsonl").read_text()
    assert skipped == plain.with_name("answers.skipped.jsonl").read_text()
    assert [json.loads(line)["line"] for line in skipped.splitlines()] == [13, 15]


def test_a_finished_or_changed_run_starts_afresh(tmp_path: Path, checkpoint: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(10))
    output = tmp_path / "answers.jsonl"
    transform(tmp_path, checkpoint, source, output, "predict.window=4")
    first = output.read_bytes()
    capsys.readouterr()
    transform(tmp_path, checkpoint, source, output, "predict.window=4")
    assert f"sagelab: the earlier run of this command finished (10 answered); starting {output} afresh." \
        in capsys.readouterr().err
    assert output.read_bytes() == first

    with pytest.raises(RuntimeError, match="probe: stopped after window 1"):
        transform(tmp_path, checkpoint, source, output, "predict.window=4", *stop_after(1, "error", tmp_path / "m"))
    assert state(output)["consumed"] == 4 and not state(output)["finished"]
    write_jsonl(source, sentences(12))  # the input changes before the re-run
    capsys.readouterr()
    transform(tmp_path, checkpoint, source, output, "predict.window=4")
    assert f"sagelab: input changed since the earlier run; starting {output} afresh." in capsys.readouterr().err
    assert [r["sentence"] for r in rows(output)] == sentences(12)


def test_a_window_of_no_lines_is_refused_naming_the_key(tmp_path: Path) -> None:
    from sagelab.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        dispatch_cfg(compose_config("task=glue_sst2", "mode=batch_transform", "predict.window=0", tmp=tmp_path))
    assert (refused.value.key, refused.value.message) == ("predict.window", "must be greater than zero, got 0.")
