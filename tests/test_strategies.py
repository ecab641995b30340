"""Distributed strategies on 2 CPU processes: one MLflow run per command, sweeps stay in the parent."""

import pytest

from conftest import mlflow_runs

TINY = ["task=glue_cola", "data.train_limit=48", "data.eval_limit=24"]


def test_ddp_is_one_mlflow_run(run_cli, tmp_path):
    result = run_cli(*TINY, "strategy=ddp")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(tmp_path, "glue_cola")
    assert len(runs) == 1
    assert runs.iloc[0]["status"] == "FINISHED" and runs.iloc[0]["tags.strategy"] == "ddp"
    assert runs["metrics.val/mcc"].notna().all()


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_ddp_multirun_runs_each_point_once(run_cli, tmp_path):
    result = run_cli("-m", *TINY, "strategy=ddp", "optim.lr=1e-3,2e-3", f"hydra.sweep.dir={tmp_path}/sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(tmp_path, "glue_cola")
    assert sorted(runs["params.optim.lr"]) == ["0.001", "0.002"]
    assert (runs["status"] == "FINISHED").all()
    assert result.stdout.count("Launching 2 jobs") + result.stderr.count("Launching 2 jobs") == 1


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_fsdp_trains_sharded(run_cli, tmp_path, make_cfg):
    result = run_cli(*TINY, "strategy=fsdp")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(tmp_path, "glue_cola")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    assert runs["metrics.val/mcc"].notna().all()

    from sagelab.tasks.glue.task import GlueTask

    full_bytes = sum(p.numel() * 4 * 3 for p in GlueTask(make_cfg(*TINY)).module().parameters())  # fp32 + Adam m, v
    held = runs.iloc[0]["metrics.memory/param_optim_mb"] * 2**20
    assert held == pytest.approx(full_bytes / 2, rel=0.02)  # each of 2 processes holds half


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_joblib_launcher_runs_the_points_in_parallel(run_cli, tmp_path):
    """Hydra's joblib launcher: both points at once, each in its own process, folder and MLflow run."""
    result = run_cli("-m", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optim.lr=1e-3,2e-3",
                     f"hydra.sweep.dir={tmp_path}/sweep", "checkpoint.dir=${hydra:runtime.output_dir}/ckpt")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(tmp_path, "glue_cola")
    assert sorted(runs["params.optim.lr"]) == ["0.001", "0.002"]
    assert (runs["status"] == "FINISHED").all()
    assert len(list((tmp_path / "sweep").glob("*/ckpt/final.ckpt"))) == 2  # one folder per point
