"""Hydra's submitit launcher (``hydra-submitit-launcher``): its local executor runs a ``-m`` sweep here, each point in
its own submitit job, folder and MLflow run. (``submitit_slurm`` takes the same path on a SLURM cluster.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, mlflow_runs

TINY = ["task=glue_sst2", "data.train_limit=48", "data.eval_limit=24"]


def test_submitit_local_runs_each_point_as_a_job(run_cli, tmp_path):
    result = run_cli("-m", *TINY, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     "optim.lr=1e-3,2e-3", f"hydra.sweep.dir={tmp_path}/sweep",
                     "checkpoint.dir=${hydra:runtime.output_dir}/ckpt")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    runs = mlflow_runs(tmp_path, "glue_sst2")
    assert sorted(runs["params.optim.lr"]) == ["0.001", "0.002"]
    assert (runs["status"] == "FINISHED").all()
    assert runs["metrics.val/accuracy"].notna().all()
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))) == 2  # submitit ran both jobs
    assert len(list((tmp_path / "sweep").glob("*/ckpt/final.ckpt"))) == 2


@pytest.mark.slow  # a DDP job (parent, child, submitit's runner): ~70 s on this shared machine
def test_ddp_inside_a_submitit_job_relaunches_run_py(run_cli, tmp_path):
    """A submitit job's ``__main__`` is submitit's job runner; Lightning's DDP children must run run.py instead
    (they used to re-run ``python -m submitit.core._submit`` with the job's overrides and die on its usage line)."""
    result = run_cli("-m", *TINY, "hydra/launcher=submitit_local", "strategy=ddp", "optim.lr=1e-3",
                     f"hydra.sweep.dir={tmp_path}/sweep", "checkpoint.dir=${hydra:runtime.output_dir}/ckpt")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    runs = mlflow_runs(tmp_path, "glue_sst2")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED" and runs.iloc[0]["tags.strategy"] == "ddp"


PROBE = """
import runpy, sys
sys.argv = ["run.py", *sys.argv[1:]]
try:
    runpy.run_path("run.py", run_name="__main__")
except SystemExit as exit:
    print("EXIT", exit.code, "SUBMITIT", "submitit" in sys.modules, "TORCH", "torch" in sys.modules)
"""


def probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plugin_launchers_are_known_options_and_help_stays_light():
    """``hydra/launcher`` options come from Hydra and its installed plugins, not from conf/: a typo is one line that
    lists them; neither that nor ``--help`` imports submitit (or torch)."""
    typo = probe("-m", "hydra/launcher=submitit_locl", "optim.lr=1e-3,2e-3")
    assert typo.stderr.strip() == ("sagelab: bad config: hydra/launcher: there is no option 'submitit_locl'; "
                                   "choose one of basic, joblib, submitit_local, submitit_slurm."), typo.stderr
    assert "EXIT 2 SUBMITIT False TORCH False" in typo.stdout, typo.stdout

    helped = probe("--help")
    assert "EXIT 0 SUBMITIT False TORCH False" in helped.stdout, helped.stdout[-2000:]
    assert "strategy: ddp, ddp_multinode" in helped.stdout
