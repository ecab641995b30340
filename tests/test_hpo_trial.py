"""Real trials: the HPO callback inside the one runner, and (slow) whole studies of bert_tiny runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagelab.config import PROJECT_ROOT
from conftest import dispatch_cfg as train, mlflow_store
from test_hpo_study import compose, read_csv

TINY = ["task=glue_mrpc", "model=bert_tiny", "data.train_limit=48", "data.eval_limit=24", "optim.batch_size=16",
        "optim.eval_batch_size=16", "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=0",
        "checkpoint.save_model=false"]


def logging_args(tmp: Path) -> list[str]:
    return [f"logger.tracking_uri={mlflow_store(tmp)}", f"logger.artifact_location={tmp}/artifacts"]


def trial_spec(tmp: Path):
    from sagelab.hpo.spec import build_spec

    study_cfg = compose(*TINY, *logging_args(tmp), "hpo=asha", "search_space=glue_default",
                        f"hpo.dir={tmp}/hpo", "hpo.max_resource=2", "hpo.max_trials=1")
    spec = build_spec(study_cfg, TINY)
    spec.parent_run_id = "0" * 32
    spec.save()
    return spec


COMMON = [*TINY, "trainer.max_epochs=2", "optim.lr=1e-3"]


def hpo_callback(spec) -> list[str]:
    return ["+callbacks.hpo._target_=sagelab.hpo.callback.HPOCallback", f"+callbacks.hpo.spec={spec.spec_path}",
            "+callbacks.hpo.trial=0", "+callbacks.hpo.price_per_hour=${instance.price_per_hour}"]


def test_callback_reports_every_epoch_to_the_scheduler_and_mlflow(tmp_path, capfd):
    spec = trial_spec(tmp_path)
    metrics = train(compose(*COMMON, *logging_args(tmp_path), f"+output_dir={tmp_path}/b",
                            f"checkpoint.dir={tmp_path}/b", f"logger.parent_run_id={spec.parent_run_id}",
                            *hpo_callback(spec)))
    out = capfd.readouterr().out
    result = json.loads((spec.trial_dir(0) / "result.json").read_text())
    assert result["rounds"] == 2 and result["deferred"] is True  # the full-fidelity round waits for the exit
    last = result["history"][-1]
    assert last["error"] == pytest.approx(1 - metrics["val/f1"], abs=1e-6)
    assert last["train_time_s"] > 0
    from sagelab.hpo.callback import has_predict_step
    from sagelab.tasks.glue.module import SequenceClassifier

    # latency_ms is the module's own predict_step timed (test_hpo_latency.py); a module without one reports none
    assert ("latency_ms" in last) == has_predict_step(SequenceClassifier)
    assert last.get("latency_ms", 1.0) > 0
    assert last["cost_usd"] == pytest.approx(last["train_time_s"] * 0.23 / 3600)  # local_cpu2's price
    reports = [json.loads(line.split(": ", 1)[1]) for line in out.splitlines() if line.startswith("[tune-metric]")]
    assert [r["epoch"] for r in reports] == [1]  # Syne Tune heard round 1 from the run itself
    assert reports[0]["error"] == pytest.approx(result["history"][0]["error"])

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run = mlflow.get_run(result["mlflow_run_id"])
    assert run.data.tags["mlflow.parentRunId"] == spec.parent_run_id
    assert run.data.tags["sagelab.hpo.trial"] == "0" and run.data.tags["sagelab.hpo.study"] == spec.name


@pytest.mark.slow
def test_callback_does_not_change_the_run(tmp_path):
    """Measuring latency mid-training must not shift the training RNG, or the best config would not reproduce."""
    spec = trial_spec(tmp_path)
    plain = train(compose(*COMMON, *logging_args(tmp_path), f"+output_dir={tmp_path}/a", f"checkpoint.dir={tmp_path}/a"))
    with_hpo = train(compose(*COMMON, *logging_args(tmp_path), f"+output_dir={tmp_path}/b",
                             f"checkpoint.dir={tmp_path}/b", *hpo_callback(spec)))
    for key in ("val/f1", "val/accuracy", "val/loss"):
        assert with_hpo[key] == pytest.approx(plain[key], abs=1e-6)


def study(tmp: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "run.py", *TINY, *logging_args(tmp), f"hpo.dir={tmp}/hpo",
         f"hpo.experiment_dir={tmp}/conf/experiment", "hpo.max_resource=2", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    study_dir = next((tmp / "hpo").iterdir())
    return json.loads((study_dir / "results" / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, space", [("asha", "glue_default"), ("moasha", "glue_instances"),
                                              ("nsga2", "glue_instances"), ("tpe", "glue_default")])
def test_study_of_real_bert_tiny_trials(tmp_path, algorithm, space):
    summary = study(tmp_path, f"hpo={algorithm}", f"search_space={space}", "hpo.max_trials=3",
                    "search_space.params.model.values=[bert_tiny]" if "instances" in space else "hpo.n_workers=1")
    assert summary["n_trials"] == 3 and summary["n_failed"] == 0
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True)
    parent = runs[runs["tags.sagelab.hpo.role"] == "parent"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]]
    assert len(parent) == 1 and len(children) == 3
    assert set(children["status"]) <= {"FINISHED", "KILLED"}
    rows = read_csv(Path(summary["study_dir"]) / "results" / "trials.csv")
    assert {r["mlflow_run_id"] for r in rows} == set(children["run_id"])

    if algorithm == "moasha":  # the best configuration reproduces its trial as an ordinary run
        best = next(r for r in rows if int(r["trial_id"]) == summary["best_trial"])
        name = Path(summary["best_experiment"]).stem
        proc = subprocess.run(
            [sys.executable, "run.py", f"+experiment={name}", f"hydra.searchpath=[file://{tmp_path}/conf]",
             f"checkpoint.dir={tmp_path}/repro", f"hydra.run.dir={tmp_path}/repro"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        reproduced = mlflow.search_runs(search_all_experiments=True, order_by=["start_time DESC"]).iloc[0]
        assert reproduced["params.optim.lr"] == repr(float(best["config.lr"]))
        assert reproduced["metrics.val/f1"] == pytest.approx(float(best["val/f1"]), abs=1e-6)
