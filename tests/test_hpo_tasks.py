"""Every task that has a search space runs as a real HPO study: ``run.py task=<t> hpo=asha search_space=<s>``.

One tiny study per task (one trial, one epoch of at most two steps, a few examples, ``model=bert_tiny`` for the
transformer tasks): the trial is an ordinary ``run.py`` run whose HPOCallback reports the task's metric and
times the module's own ``predict_step`` (the latency probe). Each search space file is used at least once.
CI runs one task per family (glue_mrpc, qa, link_prediction, node_classification); the other GLUE tasks are ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagelab.config import PROJECT_ROOT, group_options
from conftest import mlflow_store

CONF = PROJECT_ROOT / "conf"
# CI time: one GLUE task (the rest differ only in data) and link prediction; QA, NER and the node families
# (tested on their own in test_node_classification.py) under make test-slow
IN_CI = {"glue_mrpc", "link_prediction"}
SMALL = {
    "glue": ["model=bert_tiny", "data.train_limit=32", "data.eval_limit=16", "optim.eval_batch_size=16"],
    "qa": ["model=bert_tiny", "task.max_seq_length=192", "data.train_limit=16", "data.eval_limit=12",
           "optim.eval_batch_size=8"],  # windows longer than the space's largest doc_stride (128)
    "link_prediction": [],  # the example graph is small already
    "node_classification": [],  # Cora: one full-graph step per epoch
    "node_regression": [],  # the example graph; the same code as node_classification, so not in CI
    "hetero": [],  # MovieLens: full-graph steps
}


def family(task: str) -> str:
    for prefix in ("glue", "hetero"):  # one space serves every task of these families
        if task.startswith(prefix):
            return prefix
    return task


def studies() -> list:
    """(task, space) for every task with a space: a space serves the tasks of its family (glue_* all GLUE
    tasks); the spaces of a family are handed out in turn so that each file runs."""
    spaces = [s for s in group_options(CONF / "search_space") if s != "none"]
    pairs, turn = [], {}
    for task in group_options(CONF / "task"):
        own = [s for s in spaces if family(s) == family(task)]
        if not own:
            continue  # drift: nothing to tune
        space = own[turn.get(family(task), 0) % len(own)]
        turn[family(task)] = turn.get(family(task), 0) + 1
        marks = () if task in IN_CI else (pytest.mark.slow,)
        pairs.append(pytest.param(task, space, marks=marks, id=f"{task}-{space}"))
    return pairs


def test_every_search_space_and_every_tunable_task_is_covered():
    params = [p.values for p in studies()]
    assert {space for _, space in params} == {s for s in group_options(CONF / "search_space") if s != "none"}
    assert {task for task, _ in params} == {t for t in group_options(CONF / "task") if t != "drift"}
    assert IN_CI <= {task for task, _ in params}


@pytest.mark.parametrize("task, space", studies())
def test_a_tiny_study_of_the_task_runs(tmp_path: Path, task: str, space: str) -> None:
    samples_transformers = space in ("glue_models", "glue_instances")  # minilm too: keep to bert_tiny
    only_bert_tiny = ["search_space.params.model.values=[bert_tiny]"] if samples_transformers else []
    proc = subprocess.run(
        [sys.executable, "run.py", f"task={task}", "hpo=asha", f"search_space={space}", *SMALL[family(task)],
         *only_bert_tiny, "trainer.max_steps=2", "hpo.max_trials=1", "hpo.max_resource=1",
         f"hpo.dir={tmp_path}/hpo", f"hpo.experiment_dir={tmp_path}/experiment",
         f"logger.tracking_uri={mlflow_store(tmp_path)}", f"logger.artifact_location={tmp_path}/artifacts"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (study_dir,) = (tmp_path / "hpo").iterdir()
    summary = json.loads((study_dir / "results" / "summary.json").read_text())
    assert (summary["n_trials"], summary["n_completed"]) == (1, 1)
    (round_,) = json.loads((study_dir / "trials" / "0" / "result.json").read_text())["history"]
    assert "error" in round_ and round_["latency_ms"] > 0  # the probe timed the task's own predict_step
    assert Path(summary["best_experiment"]).is_file()
