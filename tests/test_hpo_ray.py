"""Studies on a real Ray cluster (``hpo.backend=ray``): a head and one worker node on this machine.

The module's fixture starts the cluster once (``tests/ray_cluster.py``: one CPU per node, its own temp dir and
ports, torn down by process group afterwards); the studies connect to it with ``hpo.ray_address``. Trials ask
for one CPU each and two run at once, so both nodes must take trials.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mlflow_store
from sagelab.config import PROJECT_ROOT, ConfigError

from test_hpo_shared import child_runs
from test_hpo_study import compose, read_csv, run, study_args

pytest.importorskip("ray", reason="hpo.backend=ray needs the ray package (pip install 'ray[tune]')")


@pytest.fixture(scope="module")
def ray_address():
    from ray_cluster import local_cluster

    with local_cluster(workers=1, cpus=1) as address:
        yield address


def node_ids(study_dir: Path) -> list[str]:
    return [json.loads((t / "trial.json").read_text()).get("node_id") for t in (study_dir / "trials").iterdir()]


def test_asha_study_on_a_two_node_cluster(tmp_path, ray_address):
    summary = run(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.backend=ray",
                              f"hpo.ray_address={ray_address}", "hpo.max_trials=6", "hpo.max_resource=3",
                              "hpo.n_workers=2", "+synthetic.epoch_s=0.3"))
    study_dir = Path(summary["study_dir"])
    rows = read_csv(study_dir / "results" / "trials.csv")
    assert summary["n_trials"] == 6 == len(rows) and summary["n_failed"] == 0
    assert summary["n_completed"] + summary["n_stopped"] == 6 and summary["n_completed"] >= 1
    # completed trials ran to max_resource; a stopped one may have written more rounds than Ray had seen when its
    # stop landed (the run goes on while the scheduler decides), so only its exit below says who stopped it
    assert all(int(r["rounds"]) == 3 for r in rows if r["status"] == "completed")
    for row in rows:  # a stopped trial's process was ended by the trainable's cleanup, not left running
        exit_info = json.loads((study_dir / "trials" / row["trial_id"] / "exit.json").read_text())
        if row["status"] == "stopped":
            assert exit_info["reason"] == "stopped by Ray Tune" and exit_info["returncode"] != 0
        else:
            assert exit_info == {"returncode": 0}
    assert sorted(int(r["trial_id"]) for r in rows) == list(range(6))
    # trial 0 is the default configuration (the searcher's first suggestion), and the summary measures against it
    trial0 = json.loads((study_dir / "trials" / "0" / "trial.json").read_text())["config"]
    assert trial0 == json.loads((study_dir / "spec.json").read_text())["default_config"]
    assert summary["default_trial"] == 0
    # both nodes ran trials, and every trial says where
    assert len(set(node_ids(study_dir))) == 2 and None not in node_ids(study_dir)
    assert {r["node_id"] for r in rows} == set(node_ids(study_dir))
    front = read_csv(study_dir / "results" / "pareto.csv")
    assert len(front) == summary["pareto_size"] == 1  # one objective: the front is the best trial
    assert int(front[0]["trial_id"]) == summary["best_trial"]
    assert min(float(r["error"]) for r in rows if r["status"] == "completed") == summary["best"]["error"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    parent = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`sagelab.hpo.role` = 'parent'")
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED"
    assert parent.iloc[0]["metrics.n_trials"] == 6


def test_random_search_with_three_objectives_on_the_cluster(tmp_path, ray_address):
    # trial 1 crashes in its program: recorded as failed with its error, and the study goes on
    summary = run(*study_args(tmp_path, "hpo=random", "search_space=glue_instances", "hpo.backend=ray",
                              f"hpo.ray_address={ray_address}", "hpo.max_trials=5", "hpo.max_resource=1",
                              "hpo.n_workers=2", "+synthetic.crash_trials=[1]", "+synthetic.mlflow=true"))
    assert (summary["n_trials"], summary["n_completed"], summary["n_failed"]) == (5, 4, 1)
    failed = json.loads((Path(summary["study_dir"]) / "trials" / "1" / "trial.json").read_text())
    assert failed["status"] == "failed" and "crashes on purpose" in failed["error"]
    assert failed["reason"] == "exit code 1" and summary["best_trial"] != 1
    assert summary["objectives"] == ["error", "latency_ms", "cost_usd"] and 0 < summary["hypervolume"] <= 1
    front = read_csv(Path(summary["study_dir"]) / "results" / "pareto.csv")
    assert len(front) == summary["pareto_size"] >= 1
    # MLflow as a local study: one parent, a child per trial that got as far as its run (the crash is before it)
    _, parent, children = child_runs(tmp_path)
    trials = read_csv(Path(summary["study_dir"]) / "results" / "trials.csv")
    assert parent.info.status == "FINISHED"
    assert {c.info.run_id for c in children} == {row["mlflow_run_id"] for row in trials if row["mlflow_run_id"]}
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)


def test_a_trial_whose_actor_died_before_it_started_is_recorded_as_failed(tmp_path):
    """Tune reports the error of a trial it never started (its actor's worker died first, as under memory or
    CPU pressure): the record still says which trial it was, and the study's records still load."""
    from types import SimpleNamespace

    from sagelab.hpo.progress import Progress
    from sagelab.hpo.ray_journal import Journal
    from sagelab.hpo.ray_trial import RETRY_KEY, TRIAL_KEY
    from sagelab.hpo.records import Budget, load_trials
    from sagelab.hpo.spec import build_spec

    spec = build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.backend=ray")), [])
    budget = Budget(trials_left=2, wall_left=None, cost_before=0.0, max_cost_usd=None)
    journal = Journal(spec, state=None, session=0, budget=budget, progress=Progress(spec, budget, []))
    config = {"lr": 3e-5, "batch_size": 16, "warmup_ratio": 0.1}
    trial = SimpleNamespace(config={**config, TRIAL_KEY: 1, RETRY_KEY: None}, trial_id="RunPyTrial_1",
                            error_msg="The actor died unexpectedly before finishing this task.")
    journal.on_trial_error(0, [], trial)
    (record,) = load_trials(spec.dir)
    assert (record["trial_id"], record["status"], record["reason"]) == (1, "failed", "its Ray actor failed")
    assert record["config"] == config and journal.failed == {1}


def test_ray_backend_refuses_what_it_cannot_run(tmp_path):
    cases = [
        (["hpo=moasha", "search_space=glue_instances", "hpo.backend=ray"], "hpo.backend"),  # no Ray MO-ASHA
        (["hpo=nsga2", "search_space=glue_instances", "hpo.backend=ray"], "hpo.backend"),
        (["hpo=asha", "search_space=glue_default", "hpo.backend=optuna"], "hpo.backend"),
        (["hpo=asha", "search_space=glue_default", "hpo.ray_address=127.0.0.1:1"], "hpo.ray_address"),
        (["hpo=asha", "search_space=glue_default", "hpo.backend=ray", "hpo.ray_address=nohost"], "hpo.ray_address"),
    ]
    from sagelab.hpo.study import run_study

    for overrides, key in cases:
        with pytest.raises(ConfigError) as err:
            run_study(compose(*study_args(tmp_path, *overrides)), [])
        assert err.value.key == key, err.value
    assert not (tmp_path / "hpo").exists()


PROBE = """
import runpy, sys
sys.argv = ["run.py", *sys.argv[1:]]
try:
    runpy.run_path("run.py", run_name="__main__")
except SystemExit as exit:
    print("EXIT", exit.code, "RAY", "ray" in sys.modules)
"""


def test_a_refused_ray_study_is_one_line_without_importing_ray(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *study_args(tmp_path, "hpo=moasha", "search_space=glue_instances",
                                                  "hpo.backend=ray")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert "EXIT 2 RAY False" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("sagelab: bad config: hpo.backend: ray runs hpo=asha")
    assert "Traceback" not in proc.stderr


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path):
    from ray_cluster import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "run.py", *study_args(tmp_path, "hpo=asha", "search_space=glue_default",
                                               "hpo.backend=ray", f"hpo.ray_address={address}")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "hpo.ray_address" in proc.stderr and address in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "hpo").exists()


@pytest.mark.slow
def test_real_bert_tiny_study_on_the_cluster(tmp_path, ray_address):
    """``task=glue_sst2 hpo=asha`` with real ``run.py`` trials (bert_tiny, tiny data): every trial is an MLflow child."""
    import time

    from conftest import TINY

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "run.py", "task=glue_sst2", *TINY, f"hpo.dir={tmp_path}/hpo",
         f"hpo.experiment_dir={tmp_path}/conf/experiment", f"logger.tracking_uri={mlflow_store(tmp_path)}",
         f"logger.artifact_location={tmp_path}/artifacts", "hpo=asha",
         "search_space=glue_default", "hpo.backend=ray", f"hpo.ray_address={ray_address}", "hpo.max_trials=5",
         "hpo.max_resource=2", "hpo.n_workers=2"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800,
    )
    wall_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    study_dir = next((tmp_path / "hpo").iterdir())
    summary = json.loads((study_dir / "results" / "summary.json").read_text())
    assert summary["n_trials"] == 5 and summary["n_failed"] == 0
    assert len(set(node_ids(study_dir))) == 2

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True)
    parent = runs[runs["tags.sagelab.hpo.role"] == "parent"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]]
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED" and len(children) == 5
    assert set(children["status"]) <= {"FINISHED", "KILLED"}
    rows = read_csv(study_dir / "results" / "trials.csv")
    assert {r["mlflow_run_id"] for r in rows} == set(children["run_id"])
    assert (study_dir / "results" / "pareto.csv").exists()
    print(f"\nreal study on the cluster: {summary['n_trials']} trials ({summary['n_completed']} completed, "
          f"{summary['n_stopped']} stopped), wall {wall_s:.0f} s, best trial {summary['best_trial']} "
          f"{summary['best']}, config {summary['best_config']}")


@pytest.mark.slow
def test_sigterm_ends_a_cluster_study_resumably(tmp_path, ray_address):
    """SIGTERM mid-study: exit 130, its running trials interrupted and their processes gone; the same command
    resumes, running the lost configurations again first."""
    import signal
    import time

    from conftest import cli_env
    from ray_cluster import pids_naming

    cmd = [sys.executable, "run.py", *study_args(tmp_path, "hpo=asha", "search_space=glue_default",
                                                 "hpo.backend=ray", f"hpo.ray_address={ray_address}",
                                                 "hpo.max_trials=4", "hpo.max_resource=3", "hpo.n_workers=2",
                                                 "+synthetic.epoch_s=4")]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cli_env())
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("hpo/*/trials/*/result.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    study_dir = next((tmp_path / "hpo").iterdir())
    records = [json.loads(t.read_text()) for t in study_dir.glob("trials/*/trial.json")]
    lost = {r["trial_id"]: r["config"] for r in records if r["status"] == "interrupted"}
    assert lost and "running" not in {r["status"] for r in records}
    drawn = [r["config"] for r in records]
    time.sleep(1.0)
    assert not pids_naming(str(study_dir))  # no trial process outlived its study

    again = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, env=cli_env())
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((study_dir / "results" / "summary.json").read_text())
    assert summary["n_completed"] + summary["n_stopped"] == 4
    retries = [json.loads(t.read_text()) for t in study_dir.glob("trials/*/trial.json")]
    rerun = {r["retry_of"]: r["config"] for r in retries if r.get("retry_of") is not None}
    assert rerun == lost
    fresh = [r["config"] for r in retries if r["session"] == 1 and r.get("retry_of") is None]
    assert fresh and not [c for c in fresh if c in drawn]  # the random stream went on, no config drawn twice


@pytest.mark.slow
def test_without_an_address_the_study_starts_a_local_ray(tmp_path, monkeypatch):
    """``hpo.ray_address`` null: ``ray.init()`` in the study's process, shut down with the session."""
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # else Ray 2.60 writes a token into ~/.ray for a local cluster
    summary = run(*study_args(tmp_path, "hpo=random", "search_space=glue_default", "hpo.backend=ray",
                              "hpo.max_trials=3", "hpo.max_resource=1", "hpo.n_workers=2"))
    assert (summary["n_trials"], summary["n_completed"]) == (3, 3)
    assert len(summary["session"]["nodes"]) == 1 and not ray.is_initialized()
