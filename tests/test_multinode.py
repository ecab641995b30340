"""Two "nodes" on this machine: two torchrun agents (one process each, c10d rendezvous on 127.0.0.1) train as one
DDP job, with the same metrics as Lightning's own 2-process DDP and one MLflow run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, cli_env, recorded_runs, tiny_overrides

TASK = ["task=glue_sst2", "seed=7"]
TIMEOUT_S = 240
METRICS = ("train/loss", "val/loss", "val/accuracy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(nodes: int, port: int, run_id: str) -> list[str]:
    """The command each node runs (the same on every node: c10d hands out the node ranks)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_id,
            "--rdzv-conf", "join_timeout=60", "--max-restarts", "0", str(ROOT / "run.py")]


def run_together(commands: dict[str, list[str]], logs: Path) -> dict[str, int]:
    """Start every command at once and wait for all; on a timeout or a failure kill each one's whole process group
    (torchrun's agent and its worker), so no node is left waiting for a peer."""
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as out:
                procs[name] = subprocess.Popen(command, cwd=ROOT, env=cli_env(), stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True)
        return {name: proc.wait(timeout=TIMEOUT_S) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def tails(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))


def the_run(tmp: Path) -> tuple[dict[str, float], list[tuple[int, float]], dict[str, str]]:
    """The one MLflow run of the job logged under ``tmp``: final metrics, train-loss history, tags."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("glue_sst2").experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]  # one job, one run: only global rank 0 logs
    run = runs[0]
    assert run.info.status == "FINISHED"
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")]
    return {k: run.data.metrics[k] for k in METRICS}, history, run.data.tags


def two_nodes(tmp: Path, *overrides: str) -> dict[str, list[str]]:
    """Two torchrun agents on this machine, one process each: the same command twice."""
    command = [*torchrun(2, free_port(), uuid.uuid4().hex[:8]), *tiny_overrides(tmp), *TASK, *overrides]
    return {"node0": command, "node1": command}


def test_two_torchrun_nodes_train_as_one_job(tmp_path):
    """CI's multi-node run: two nodes rendezvous, train, evaluate, and rank 0 alone records one run."""
    codes = run_together(two_nodes(tmp_path, "strategy=ddp_multinode", "checkpoint.save_model=false"),
                         tmp_path / "logs")
    assert codes == {"node0": 0, "node1": 0}, tails(tmp_path / "logs")
    metrics, history, tags = the_run(tmp_path)
    assert tags["strategy"] == "ddp_multinode" and len(history) >= 2
    assert all(value == value for value in metrics.values())  # logged, not NaN


@pytest.mark.slow
def test_two_torchrun_nodes_match_two_process_ddp(tmp_path):
    """The same seed and data through torchrun (2 nodes x 1 process) and through Lightning's own launcher
    (1 node x 2 processes): the same ranks see the same batches, so the metrics agree to 1e-6."""
    nodes_dir, ddp_dir = tmp_path / "torchrun", tmp_path / "ddp"
    ddp = [sys.executable, str(ROOT / "run.py"), *tiny_overrides(ddp_dir), *TASK, "strategy=ddp",
           "checkpoint.save_model=false"]
    codes = run_together({**two_nodes(nodes_dir, "strategy=ddp_multinode", "checkpoint.save_model=false"),
                          "ddp": ddp}, tmp_path / "logs")
    assert codes == {"node0": 0, "node1": 0, "ddp": 0}, tails(tmp_path / "logs")

    (multinode, steps, tags), (local, local_steps, _) = the_run(nodes_dir), the_run(ddp_dir)
    print("\ntorchrun 2 nodes x 1:", multinode, "\nLightning DDP 1 node x 2:", local)
    print("train/loss by step:", steps, local_steps)
    for name in METRICS:
        assert multinode[name] == pytest.approx(local[name], abs=1e-6), name
    assert [s for s, _ in steps] == [s for s, _ in local_steps] and len(steps) >= 2
    for (_, a), (_, b) in zip(steps, local_steps):
        assert a == pytest.approx(b, abs=1e-6)
    assert tags["strategy"] == "ddp_multinode"


FAKE_TORCHRUN = {"TORCHELASTIC_RUN_ID": "test", "RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0",
                 "LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "2", "GROUP_WORLD_SIZE": "2"}


@pytest.mark.parametrize(
    ("env", "overrides", "expected"),
    [
        (FAKE_TORCHRUN, ["strategy=ddp", "strategy.num_nodes=2"],
         "strategy.processes: is 2, but torchrun started 1 process(es) on this node; set strategy.processes=1."),
        (FAKE_TORCHRUN, ["strategy=ddp_multinode", "strategy.num_nodes=3"],
         "strategy.num_nodes: is 3, but torchrun started 2 process(es) in all, 1 per node: set strategy.num_nodes=2."),
        (FAKE_TORCHRUN, ["strategy=single"], "strategy.num_nodes: is 1, but torchrun started 2 process(es) in all"),
        ({"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2(x2)", "SLURM_NNODES": "2", "SLURM_JOB_NAME": "train"},
         ["strategy=ddp", "strategy.num_nodes=3"], "strategy.num_nodes: is 3, but SLURM started 4 process(es) in all, "
         "2 per node: set strategy.num_nodes=2."),
        ({}, ["strategy=ddp_multinode"], "strategy.num_nodes: is 2, but no launcher started this process on 2 nodes"),
    ],
)
def test_the_config_must_describe_the_launchers_world(make_cfg, monkeypatch, env, overrides, expected):
    """What torchrun or SLURM started (their environment, faked: nothing rendezvous) against strategy.*."""
    from sagelab import cluster
    from sagelab.config import ConfigError

    for key in [*FAKE_TORCHRUN, "SLURM_NTASKS", *cluster.MANUAL_NODE_VARS]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        cluster.check(make_cfg(*overrides))
    assert f"{err.value.key}: {err.value.message}".startswith(expected)


def test_a_matching_config_passes_and_ddp_spawn_refuses_torchrun(make_cfg, monkeypatch):
    from sagelab import cluster, strategies
    from sagelab.config import ConfigError

    for key, value in FAKE_TORCHRUN.items():
        monkeypatch.setenv(key, value)
    assert cluster.check(make_cfg("strategy=ddp_multinode")) == cluster.External("torchrun", 2, 1, 2)
    with pytest.raises(ConfigError, match="ddp_spawn starts its own processes, but torchrun already started them"):
        strategies.ddp_spawn(processes=1, num_nodes=2, backend="gloo")


def test_the_cli_says_it_in_one_line_before_any_run_opens(tmp_path):
    command = [sys.executable, str(ROOT / "run.py"), *tiny_overrides(tmp_path), "strategy=ddp", "strategy.num_nodes=2"]
    result = subprocess.run(command, cwd=ROOT, env={**cli_env(), **FAKE_TORCHRUN}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert ("sagelab: bad config: strategy.processes: is 2, but torchrun started 1 process(es) on this node; "
            "set strategy.processes=1.") in result.stderr
    assert "Traceback" not in result.stderr and recorded_runs(tmp_path) == 0
