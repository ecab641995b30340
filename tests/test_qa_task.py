"""``task=qa`` through the runner: config checks, shard-independent scoring, train -> evaluate -> predict.

Runs on the tiny random BERT (``model=bert_tiny``) and a few SQuAD questions with short windows.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from sagelab.config import PROJECT_ROOT, ConfigError

from conftest import compose_config, dispatch_cfg as run, mlflow_store


SMALL_QA = ["task=qa", "model=bert_tiny", "task.max_seq_length=96", "task.doc_stride=32", "data.train_limit=16",
            "data.eval_limit=12", "optim.batch_size=4", "optim.eval_batch_size=8", "trainer.max_steps=2",
            "trainer.enable_progress_bar=false"]


def compose(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose_config(*SMALL_QA, f"task.cache_dir={tmp_path}/hf_cache", *overrides, tmp=tmp_path, tiny=False)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("task.doc_stride=96", "task.doc_stride"),
        ("task.source=/nope/squad.json", "task.source"),
        ("task.n_best_size=0", "task.n_best_size"),
        ("task.metric=val/accuracy", "task.metric"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, override: str, key: str) -> None:
    from sagelab.tasks.qa.task import QATask

    cfg = compose(tmp_path, override)
    with pytest.raises(ConfigError) as err:
        QATask(cfg).validate()
    assert err.value.key == key


def test_scoring_does_not_depend_on_how_evaluation_was_sharded() -> None:
    """Rows gathered from 2 ranks (interleaved, one repeated) score exactly like the ordered rows."""
    from sagelab.tasks.qa.module import score_rows
    from sagelab.tasks.qa.postprocess import SquadV1

    rng = np.random.default_rng(0)
    context = "alpha beta gamma delta epsilon zeta eta theta"
    words = [(m, m + len(w)) for m, w in ((context.index(w), w) for w in context.split())]
    meta, rows, examples = [], [], []
    for q in range(6):
        examples.append({"id": f"q{q}", "context": context, "answers": {"text": [context.split()[q]]}})
        for _ in range(2):  # two windows per question
            meta.append({"example_id": f"q{q}", "offset_mapping": [None] + [list(w) for w in words] + [None]})
            rows.append((len(rows), rng.normal(size=10), rng.normal(size=10)))
    ordered = score_rows(rows, meta, examples, SquadV1(), 20, 30)
    rank0, rank1 = rows[0::2], rows[1::2]
    shuffled = rank1 + rank0 + [rows[3]]
    random.Random(1).shuffle(shuffled)
    assert score_rows(shuffled, meta, examples, SquadV1(), 20, 30) == ordered
    partial = score_rows(rows[:4], meta, examples, SquadV1(), 20, 30)
    assert partial[0]["questions"] == 2.0 and set(partial[1]) == {"q0", "q1"}


def test_read_records_names_bad_lines(tmp_path: Path) -> None:
    from sagelab.transform import read_predict_input
    from sagelab.tasks.qa.task import parse_qa_record

    array = tmp_path / "q.json"
    array.write_text('[\n  {"question": "Who?", "context": "Ann did."},\n  {"question": "Why?"},\n'
                     '  {"question": "When?", "context": "   "},\n  "text",\n  {"question": "Where?", "context": "Here."}\n]')
    records, bad = read_predict_input(array, parse_qa_record)
    assert [r["line"] for r in records] == [2, 6]
    assert [(b.line, b.reason) for b in bad] == [
        (3, "missing or empty 'context'"), (4, "missing or empty 'context'"), (5, "not a JSON object")]


def test_table_input_rows_are_records_with_their_line(tmp_path: Path) -> None:
    from sagelab.transform import read_predict_input
    from sagelab.tasks.qa.task import parse_qa_record

    table = tmp_path / "q.tsv"
    table.write_bytes(b'id\tquestion\tcontext\na\tWho?\t"Ann did.\nShe did."\nb\tWhy?\t\n'
                      b'c\tWhen?\tCaf\xe9 time.\nd\tWhere?\n e\tWhat?\tThis.\n')
    records, bad = read_predict_input(table, parse_qa_record)
    assert [(r["line"], r["id"], r["context"]) for r in records] == [(3, "a", "Ann did.\nShe did."), (7, " e", "This.")]
    assert [(b.line, b.reason) for b in bad] == [
        (4, "missing or empty 'context'"), (5, "not UTF-8"), (6, "2 fields, the header has 3")]


def test_train_evaluate_and_predict_through_the_runner(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import mlflow

    metrics = run(compose(tmp_path))
    assert 0.0 <= metrics["val/f1"] <= 100.0 and 0.0 <= metrics["val/exact_match"] <= metrics["val/f1"] + 1e-9
    assert metrics["val/questions"] == 12.0
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (train_run,) = client.search_runs(client.get_experiment_by_name("qa").experiment_id)
    local = Path(client.download_artifacts(train_run.info.run_id, "qa", str(tmp_path)))
    answers = json.loads((local / "predictions.json").read_text())
    nbest = json.loads((local / "nbest_predictions.json").read_text())
    assert len(answers) == 12 and set(nbest) == set(answers)
    assert all(1 <= len(v) <= 20 and v[0]["text"] == answers[k] for k, v in nbest.items())

    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        '{"id": "a", "question": "Who won?", "context": "The Denver Broncos won the game in 2016."}\n'
        '{"question": "Where?", "context": ""}\n'
        '{"question": "What is the capital of France?", "context": "Paris is the capital of France."}\n'
    )
    out = tmp_path / "answers.jsonl"
    summary = run(compose(tmp_path, "mode=predict", f"predict.input={questions}", f"predict.output={out}"))
    assert summary["predict/records"] == 2 and summary["predict/skipped"] == 1
    assert f"{questions}:2: skipped (missing or empty 'context')" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 3] and rows[0]["id"] == "a"
    for row in rows:
        assert row["answer"] and row["context"][row["start"] : row["end"]] == row["answer"]


@pytest.mark.slow
def test_two_process_evaluation_scores_like_one(tmp_path: Path) -> None:
    """Issue 4 item 1 on the tiny model: the same checkpoint evaluated by ddp and single gives equal EM/F1."""
    common = ["task=qa", "model=bert_tiny", f"logger.tracking_uri={mlflow_store(tmp_path)}",
              f"logger.artifact_location={tmp_path}/artifacts", f"checkpoint.dir={tmp_path}/ckpt",
              "data.train_limit=64", "data.eval_limit=300", "optim.batch_size=8", "trainer.max_steps=6",
              "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}/hydra"]
    subprocess.run([sys.executable, "run.py", *common, "strategy=ddp"], cwd=PROJECT_ROOT, check=True)
    for strategy in ("single", "ddp"):
        subprocess.run([sys.executable, "run.py", *common, "mode=evaluate", f"strategy={strategy}"],
                       cwd=PROJECT_ROOT, check=True)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs(client.get_experiment_by_name("qa").experiment_id)
    scores = {(r.data.tags["mode"], r.data.tags["strategy"]): (r.data.metrics["val/exact_match"],
                                                               r.data.metrics["val/f1"]) for r in runs}
    assert scores[("evaluate", "single")] == scores[("evaluate", "ddp")] == scores[("train", "ddp")]


def test_pretrained_model_fine_tunes_in_train_mode(tmp_path: Path) -> None:
    """from_pretrained returns eval mode; fine-tuning must still run with dropout on."""
    from sagelab.tasks.qa.task import QATask

    cfg = compose(tmp_path, "model=minilm")
    module = QATask(cfg).module()
    assert module.model.training and all(m.training for m in module.model.modules())
