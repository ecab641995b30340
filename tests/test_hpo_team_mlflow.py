"""A team's setup: an MLflow tracking server on PostgreSQL, an Optuna study on PostgreSQL, two workers.

The server is the venv's own ``mlflow server`` (backend store in one database of the PostgreSQL fixture,
artifacts proxied into a folder of the test); the study's storage is a second database. Trials are the
synthetic stand-in logging its MLflow run as a real trial does (``+synthetic.mlflow=true``): run, tags,
params, ``config.yaml`` artifact, a metric per epoch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from sagelab.config import PROJECT_ROOT
from servers import mlflow_server
from test_hpo_faults import DEADLINE_S
from test_hpo_study import study_args

TRIALS = 6


def test_two_workers_log_one_study_to_a_team_mlflow_server(tmp_path, postgres):
    from mlflow import MlflowClient

    artifacts = tmp_path / "server-artifacts"
    artifacts.mkdir()
    with mlflow_server(postgres.database("mlflow"), artifacts, tmp_path / "mlflow-server.log") as server:
        storage = postgres.database("optuna_team")
        overrides = [o for o in study_args(tmp_path, "hpo=tpe", "search_space=glue_default") if
                     not o.startswith(("logger.tracking_uri=", "logger.artifact_location="))]
        command = [sys.executable, "run.py", *overrides, f"logger.tracking_uri={server}",
                   f"hpo.max_trials={TRIALS}", "hpo.max_resource=1", f"hpo.storage={storage}",
                   "hpo.study_name=team", "hpo.n_workers=2", "+synthetic.mlflow=true"]
        log = tmp_path / "study.log"
        with open(log, "w") as out:
            study = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            assert study.wait(timeout=DEADLINE_S) == 0, log.read_text()[-3000:]
        finally:
            if study.poll() is None:
                os.killpg(study.pid, signal.SIGKILL)

        client = MlflowClient(server)
        experiments = [e.experiment_id for e in client.search_experiments()]
        (parent,) = client.search_runs(experiments, "tags.`sagelab.hpo.role` = 'parent'")
        assert parent.info.status == "FINISHED" and parent.data.tags["sagelab.hpo.study"] == "team"
        children = client.search_runs(experiments, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert len(children) == TRIALS and {r.info.status for r in children} == {"FINISHED"}
        assert sorted(int(r.data.tags["sagelab.hpo.trial"]) for r in children) == list(range(TRIALS))
        for run in children:  # what each trial logged went through the server, artifacts included
            assert "error" not in run.data.tags and run.data.metrics
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]
        config = client.download_artifacts(children[0].info.run_id, "config.yaml", str(tmp_path))
        assert "callbacks.hpo.trial" in open(config).read()
        assert "hpo" in [a.path for a in client.list_artifacts(parent.info.run_id)]  # the study's results
        # the server, not the client, decided where artifacts live
        assert list(artifacts.rglob("config.yaml")) and not (tmp_path / "artifacts").exists()
