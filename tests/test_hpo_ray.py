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

from sagelab.config import PROJECT_ROOT, ConfigError

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
    # Ray's ASHA stopped trials between rungs; completed ones ran to max_resource
    assert all(int(r["rounds"]) == 3 for r in rows if r["status"] == "completed")
    assert all(int(r["rounds"]) < 3 for r in rows if r["status"] == "stopped")
    assert sorted(int(r["trial_id"]) for r in rows) == list(range(6))
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
    summary = run(*study_args(tmp_path, "hpo=random", "search_space=glue_instances", "hpo.backend=ray",
                              f"hpo.ray_address={ray_address}", "hpo.max_trials=4", "hpo.max_resource=1",
                              "hpo.n_workers=2"))
    assert (summary["n_trials"], summary["n_completed"]) == (4, 4)
    assert summary["objectives"] == ["error", "latency_ms", "cost_usd"] and 0 < summary["hypervolume"] <= 1
    front = read_csv(Path(summary["study_dir"]) / "results" / "pareto.csv")
    assert len(front) == summary["pareto_size"] >= 1


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
