"""Bad input through the real CLI, one case per reader and fault: exit 2 with one line naming file and line,
or -- where the format promises skipping (prediction inputs, capture) -- exit 0 with every skip listed.
Never a traceback.

Each case is one ``run.py`` process on tiny files; the faults are found while reading, so nothing trains. A
process still pays ~10 s of CPU for importing torch, Lightning, transformers and MLflow before it reads, so the
cases that repeat a fault another reader already shows through the CLI are marked ``slow`` (``make test-slow``);
their readers' own tests cover them in process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from sagelab.config import PROJECT_ROOT

from conftest import TINY, compose_config, private_store

DEEP = b"[" * 100_000 + b"]" * 100_000
LONG = b"x" * 200_000
COLA = b"gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
STSB = b"main\tMSRvid\t2012test\t0001\t%s\tA man is dancing.\tA man dances.\n"
GLUE = ["task.source={tmp}/glue", "task.train_file=train.tsv", "task.eval_files=[dev.tsv]"]
QA = ["task=qa", "task.source={tmp}/squad.json", "task.cache_dir={tmp}/hf"]
PREDICT = ["task=glue_sst2", "mode=predict", "checkpoint.load={ckpt}", "predict.output={tmp}/answers.jsonl"]
DRIFT = ["task=drift", "task.n_permutations=99", "task.batch_size=8", "task.max_length=32"]
BASELINE = b"".join(b"review %d: the plot kept me reading\n" % i for i in range(12))
GRAPH = ["task=link_prediction", "model=graphsage", "task.dataset=csv", "task.datasets.csv.nodes={tmp}/nodes.csv",
         "task.datasets.csv.edges={tmp}/edges.csv"]


def squad(*qas: dict[str, Any]) -> bytes:
    paragraph = {"context": "Ann went home.", "qas": list(qas)}
    return json.dumps({"version": "1.1", "data": [{"title": "T", "paragraphs": [paragraph]}]}).encode()


def qa(qid: str, **answer: Any) -> dict[str, Any]:
    return {"id": qid, "question": "Who went home?", "answers": [answer]}


def capture(body: Any, meta: Any = None) -> bytes:
    line = {"captureData": {"endpointInput": {"data": json.dumps(body), "encoding": "JSON"}},
            "eventMetadata": meta if meta is not None else {"eventId": "e"}}
    return json.dumps(line).encode() + b"\n"


# id: (overrides, files (bytes, or a folder to copy), exit code, what it prints: the error line for exit 2,
# lines of stdout for exit 0)
CASES: dict[str, tuple[list[str], dict[str, bytes | Path], int, list[str]]] = {
    "glue-not-utf8": (
        ["task=glue_cola", *GLUE], {"glue/train.tsv": COLA + b"gj04\t1\t\tCaf\xe9 au lait.\n", "glue/dev.tsv": COLA},
        2, ["{tmp}/glue/train.tsv: line 2: not UTF-8 (byte 0xe9 at column 12)"]),
    "glue-200kb-field": (
        ["task=glue_cola", *GLUE], {"glue/train.tsv": COLA + b"gj04\t1\t\t" + LONG + b"\n", "glue/dev.tsv": COLA},
        2, ["{tmp}/glue/train.tsv: line 2: field 4 has 200,000 characters (at most 100,000: a broken file?)"]),
    "glue-label-not-a-number": (
        ["task=glue_sst2", *GLUE], {"glue/train.tsv": b"sentence\tlabel\nGreat.\tpositive\n", "glue/dev.tsv": b""},
        2, ["{tmp}/glue/train.tsv: line 2: label 'positive' is not a number"]),
    "glue-stsb-nan-score": (
        ["task=glue_stsb", *GLUE], {"glue/train.tsv": STSB % b"4.5" + STSB % b"NaN", "glue/dev.tsv": STSB % b"1"},
        2, ["{tmp}/glue/train.tsv: line 2: score 'NaN' is not a finite number"]),
    "glue-empty-file": (
        ["task=glue_cola", *GLUE], {"glue/train.tsv": COLA, "glue/dev.tsv": b""},
        2, ["{tmp}/glue/dev.tsv: has no examples"]),
    "squad-empty-file": (
        QA, {"squad.json": b""}, 2, ["task.source: {tmp}/squad.json: the file is empty, not a SQuAD v1.1 file."]),
    "squad-not-utf8": (
        QA, {"squad.json": squad(qa("q1", text="Ann", answer_start=0)).replace(b"went", b"\xe9t\xe9")},
        2, ["task.source: {tmp}/squad.json: line 1: not UTF-8 (byte 0xe9 at column 76)."]),
    "squad-answer-without-text": (
        QA, {"squad.json": squad(qa("q1", answer_start=0))},
        2, ["task.source: {tmp}/squad.json: article 0 (T) paragraph 0 question 0 answer 0: missing or empty 'text'."]),
    "squad-duplicate-ids": (
        QA, {"squad.json": squad(qa("q1", text="Ann", answer_start=0), qa("q1", text="home", answer_start=9))},
        2, ["task.source: {tmp}/squad.json: article 0 (T) paragraph 0 question 1: question id 'q1' is already used "
            "at article 0 (T) paragraph 0 question 0."]),
    "squad-100000-deep": (
        QA, {"squad.json": DEEP}, 2, ["task.source: {tmp}/squad.json: not valid JSON (nested too deeply)."]),
    "predict-jsonl-skips": (
        [*PREDICT, "predict.input={tmp}/in.jsonl"],
        {"in.jsonl": b'{"sentence": "A fine film."}\n{"sentence": null}\n{"sentence": 5}\n{"sentence": ["a", "b"]}\n'
                     + DEEP + b'\n{"sentence": "caf\xe9"}\n{"sentence": "' + LONG + b'"}\n'},
        0, ["{tmp}/in.jsonl:2: skipped (field 'sentence' is missing, not text)",
            "{tmp}/in.jsonl:3: skipped (field 'sentence' is a int, not text)",
            "{tmp}/in.jsonl:4: skipped (field 'sentence' is a list, not text)",
            "{tmp}/in.jsonl:5: skipped (not JSON: nested too deeply)",
            "{tmp}/in.jsonl:6: skipped (not UTF-8 (byte 0xe9 at column 18))",
            "wrote 2 predictions to {tmp}/answers.jsonl; skipped 5 record(s)"]),
    "predict-tsv-skips": (
        [*PREDICT, "predict.input={tmp}/in.tsv"],
        {"in.tsv": b'sentence\tid\n"A fine\nfilm."\t1\n\t2\nCaf\xe9.\t3\nno id\n' + LONG + b"\t5\nDull.\t6\n"},
        0, ["{tmp}/in.tsv:4: skipped (field 'sentence' is empty, not text)",
            "{tmp}/in.tsv:5: skipped (not UTF-8)",
            "{tmp}/in.tsv:6: skipped (1 fields, the header has 2)",
            "wrote 3 predictions to {tmp}/answers.jsonl; skipped 3 record(s)"]),
    "predict-all-skipped": (
        [*PREDICT, "predict.input={tmp}/in.json"], {"in.json": b'[null,\n {"sentence": 1},\n {"text": "x"}]'},
        2, ["predict.input: '{tmp}/in.json' has no usable record (3 skipped: not a JSON object or a string (NoneType))."]),
    "drift-capture-skips": (
        [*DRIFT, "mode=report", "task.baseline_source={tmp}/base.txt", "task.capture={tmp}/capture"],
        {"base.txt": BASELINE, "capture/b.jsonl": b"",
         "capture/a.jsonl": capture(["Loved it"]) + capture(["meta"], meta="x") + DEEP + b"\n"
                            + b'{"text": "caf\xe9"}\n' + capture(["Broke in a week"])},
        0, ["{tmp}/capture/a.jsonl:2: skipped (eventMetadata is a str, not an object)",
            "{tmp}/capture/a.jsonl:3: skipped (not JSON: nested too deeply)",
            "{tmp}/capture/a.jsonl:4: skipped (not UTF-8 (byte 0xe9 at column 14))",
            "{tmp}/capture/b.jsonl:0: skipped (empty file)",
            "monitor: 2 records (4 bad lines skipped)"]),
    "drift-txt-not-utf8": (
        [*DRIFT, "mode=baseline", "task.baseline_source={tmp}/base.txt"], {"base.txt": BASELINE + b"na\xefve\n"},
        2, ["{tmp}/base.txt: line 13: not UTF-8 (byte 0xef at column 3)"]),
    "drift-tsv-not-utf8": (
        [*DRIFT, "mode=baseline", "task.baseline_source={tmp}/base.tsv"],
        {"base.tsv": b'sentence\tlabel\n"two\nlines"\t1\nna\xefve\t0\n'},
        2, ["{tmp}/base.tsv: line 4: not UTF-8 (byte 0xef at column 3)"]),
    "graph-duplicate-column": (
        GRAPH, {"nodes.csv": b"~id,name:String,name\na,Ann,Al\nb,Bo,Bob\n", "edges.csv": b"~from,~to\na,b\n"},
        2, ["{tmp}/nodes.csv: line 1: property 'name' appears twice (columns 2 and 3)."]),
    "planetoid-hostile-pickle": (
        ["task=link_prediction", "model=gcn", "task.dataset=cora", "task.datasets.cora.path={tmp}/cora"],
        {"cora": PROJECT_ROOT / "data" / "graph" / "cora",
         "cora/ind.cora.graph": b"cos\nsystem\n(S'touch {tmp}/pwned'\ntR."},  # pickle for os.system("touch ...")
        2, ["{tmp}/cora/ind.cora.graph: is not a readable Planetoid file (UnpicklingError: it names os.system, "
            "which a Planetoid file never holds)."]),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """One MLflow store for every case (a new SQLite store costs each run ~2 s to create)."""
    return [o for o in private_store(tmp_path_factory.mktemp("store")) if o.startswith("logger.")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SST-2 weights for mode=predict without a training run: the task's own module, saved as the runner loads it."""
    import torch

    from sagelab.tasks.glue.task import GlueTask

    tmp = tmp_path_factory.mktemp("ckpt")
    path = tmp / "random.ckpt"
    torch.save({"state_dict": GlueTask(compose_config("task=glue_sst2", tmp=tmp)).module().state_dict()}, path)
    return path


def overrides(case: list[str], base: list[str]) -> list[str]:
    """``base`` minus the keys the case sets itself (a graph case names its own model)."""
    keys = {o.split("=", 1)[0] for o in case}
    return [o for o in base if o.split("=", 1)[0] not in keys] + case


# faults another case already shows through the CLI; their readers' tests check them in process
SLOW = {"glue-stsb-nan-score", "glue-empty-file", "squad-not-utf8", "squad-answer-without-text", "drift-txt-not-utf8"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_bad_input_is_one_line_or_a_listed_skip(name: str, tmp_path: Path, run_cli: Callable[..., Any],
                                                store: list[str], request: pytest.FixtureRequest) -> None:
    args, files, code, expected = CASES[name]
    fill = {"tmp": str(tmp_path)}
    if any("{ckpt}" in a for a in args):
        fill["ckpt"] = str(request.getfixturevalue("checkpoint"))
    for relative, content in files.items():
        if isinstance(content, Path):
            shutil.copytree(content, tmp_path / relative)
            continue
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(content.replace(b"{tmp}", str(tmp_path).encode()))
    per_case = [o for o in private_store(tmp_path) if not o.startswith("logger.")]
    done = run_cli(*overrides([a.format(**fill) for a in args], [*TINY, *store, *per_case]), tiny=False)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == code, done.stderr[-3000:]
    expected = [e.format(**fill) for e in expected]
    if code == 2:
        errors = [line for line in done.stderr.splitlines() if line.startswith("sagelab: bad config:")]
        assert errors == [f"sagelab: bad config: {expected[0]}"], done.stderr[-3000:]
    else:
        for line in expected:
            assert line in done.stdout, f"{line!r} not in\n{done.stdout[-3000:]}"
    assert not (tmp_path / "pwned").exists()
